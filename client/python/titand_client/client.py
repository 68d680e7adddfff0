"""A thin wrapper over the generated titand.v1 stubs: keyword arguments in, protobuf messages out."""
from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, List, Optional, Sequence

import grpc

from . import inference_pb2 as pb
from . import inference_pb2_grpc as pb_grpc


@dataclasses.dataclass
class Completion:
    """A whole generation, collected from its stream."""
    token_ids: List[int]
    text: str
    logprobs: List[float]
    finish_reason: str          # "MAX_TOKENS", "EOS", "STOP_SEQUENCE", "CANCELLED", ...
    usage: pb.Usage
    timing: pb.Timing


def _request(text=None, tokens=None, chat=None, session_id="", max_tokens=None, temperature=None,
             top_k=None, top_p=None, min_p=None, repetition_penalty=None, seed=None,
             stop: Sequence[str] = (), stop_token_ids: Sequence[int] = (), ignore_eos=False,
             include_stop_str_in_output=False, parse_special_tokens=False,
             logprobs=False, request_id="", priority=0) -> pb.GenerateRequest:
    req = pb.GenerateRequest(session_id=session_id, request_id=request_id, logprobs=logprobs,
                             priority=priority, parse_special_tokens=parse_special_tokens)
    if sum(x is not None for x in (text, tokens, chat)) > 1:
        raise ValueError("give one of text, tokens, chat")
    if text is not None:
        req.text = text
    elif tokens is not None:
        req.tokens.ids.extend(int(t) for t in tokens)
    elif chat is not None:
        for m in chat:  # [{"role": ..., "content": ...}] or (role, content) pairs
            role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
            req.chat.messages.add(role=role, content=content)
    for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p),
                        ("min_p", min_p), ("repetition_penalty", repetition_penalty), ("seed", seed)):
        if value is not None:  # unset stays unset: the server default applies
            setattr(req.sampling, name, value)
    if max_tokens is not None:
        req.stopping.max_tokens = max_tokens
    req.stopping.stop.extend(stop)
    req.stopping.stop_token_ids.extend(stop_token_ids)
    req.stopping.ignore_eos = ignore_eos
    req.stopping.include_stop_str_in_output = include_stop_str_in_output
    return req


class Client:
    """Client(address="127.0.0.1:50051"). Every call takes an optional timeout in seconds."""

    def __init__(self, address: str = "127.0.0.1:50051"):
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.InferenceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- generation ---------------------------------------------------------------------------------
    def generate(self, timeout: Optional[float] = None, **kwargs) -> Iterator[pb.GenerateResponse]:
        """Streams GenerateResponse messages. The returned iterator also has .cancel().

        kwargs: text | tokens | chat, session_id, max_tokens, temperature, top_k, top_p, min_p,
        repetition_penalty, seed, stop, stop_token_ids, ignore_eos, include_stop_str_in_output,
        parse_special_tokens, logprobs, request_id, priority.
        Errors raise grpc.RpcError (code() / details()).
        """
        return self.stub.Generate(_request(**kwargs), timeout=timeout)

    def complete(self, timeout: Optional[float] = None, **kwargs) -> Completion:
        """generate() collected into one Completion."""
        ids, text, lps, last = [], [], [], None
        for msg in self.generate(timeout=timeout, **kwargs):
            ids.extend(msg.token_ids)
            text.append(msg.text)
            lps.extend(msg.logprobs)
            last = msg
        if last is None:
            raise RuntimeError("stream ended without a final message")
        return Completion(ids, "".join(text), lps, pb.FinishReason.Name(last.finish_reason).replace(
            "FINISH_REASON_", ""), last.usage, last.timing)

    def abort(self, request_id: str, timeout: Optional[float] = None) -> None:
        self.stub.Abort(pb.AbortRequest(request_id=request_id), timeout=timeout)

    # -- sessions -----------------------------------------------------------------------------------
    def create_session(self, session_id: str = "", timeout: Optional[float] = None) -> pb.Session:
        return self.stub.CreateSession(pb.CreateSessionRequest(session_id=session_id), timeout=timeout)

    def get_session(self, session_id: str, timeout: Optional[float] = None) -> pb.Session:
        return self.stub.GetSession(pb.GetSessionRequest(session_id=session_id), timeout=timeout)

    def list_sessions(self, timeout: Optional[float] = None) -> List[pb.Session]:
        return list(self.stub.ListSessions(pb.ListSessionsRequest(), timeout=timeout).sessions)

    def delete_session(self, session_id: str, timeout: Optional[float] = None) -> None:
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=session_id), timeout=timeout)

    def fork_session(self, session_id: str, new_session_id: str = "",
                     timeout: Optional[float] = None) -> pb.Session:
        return self.stub.ForkSession(
            pb.ForkSessionRequest(session_id=session_id, new_session_id=new_session_id), timeout=timeout)

    # -- information --------------------------------------------------------------------------------
    def model_info(self, timeout: Optional[float] = None) -> pb.ModelInfo:
        return self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout)

    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """"SERVING" / "NOT_SERVING" / ... from grpc.health.v1 (needs grpcio-health-checking)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        stub = health_pb2_grpc.HealthStub(self.channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
