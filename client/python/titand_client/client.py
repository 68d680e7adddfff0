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
    shared_state: str = "UNSPECIFIED"  # --shared-store: "DURABLE", "PENDING", "REJECTED"


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


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds "authorization: Bearer <token>" to every call (over TLS or plaintext alike)."""

    def __init__(self, token: str):
        self._md = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        md = list(details.metadata or []) + [self._md]
        return details._replace(metadata=md) if hasattr(details, "_replace") else _Details(details, md)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method, self.timeout, self.metadata = d.method, d.timeout, metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


class Client:
    """Client(address="127.0.0.1:50051"). Every call takes an optional timeout in seconds.

    token: bearer token (API key) of a server with authentication on.
    root_certificates: PEM bytes of the CA that signed the server's certificate -> TLS channel;
    private_key + certificate_chain: this client's certificate (mutual TLS); server_name overrides the
    name checked against the server certificate (e.g. "localhost" when dialling 127.0.0.1)."""

    def __init__(self, address: str = "127.0.0.1:50051", token: Optional[str] = None,
                 root_certificates: Optional[bytes] = None, private_key: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None, server_name: Optional[str] = None):
        self.address = address
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
            self.channel = grpc.secure_channel(address, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(address)
        self._health_channel = self.channel
        if token is not None:
            self.channel = grpc.intercept_channel(self.channel, _BearerToken(token))
        self.stub = pb_grpc.InferenceStub(self.channel)

    def close(self) -> None:
        self._health_channel.close()

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
            "FINISH_REASON_", ""), last.usage, last.timing,
            pb.SharedState.Name(last.shared_state).replace("SHARED_STATE_", ""))

    def abort(self, request_id: str, timeout: Optional[float] = None) -> None:
        self.stub.Abort(pb.AbortRequest(request_id=request_id), timeout=timeout)

    # -- sessions -----------------------------------------------------------------------------------
    def create_session(self, session_id: str = "", timeout: Optional[float] = None) -> pb.Session:
        return self.stub.CreateSession(pb.CreateSessionRequest(session_id=session_id), timeout=timeout)

    def get_session(self, session_id: str, timeout: Optional[float] = None) -> pb.Session:
        return self.stub.GetSession(pb.GetSessionRequest(session_id=session_id), timeout=timeout)

    def list_sessions(self, timeout: Optional[float] = None) -> List[pb.Session]:
        """Every session of the caller, following the pages."""
        out, token = [], ""
        while True:
            page = self.list_sessions_page(page_size=1000, page_token=token, timeout=timeout)
            out.extend(page.sessions)
            token = page.next_page_token
            if not token:
                return out

    def list_sessions_page(self, page_size: int = 0, page_token: str = "",
                           timeout: Optional[float] = None) -> pb.ListSessionsResponse:
        return self.stub.ListSessions(pb.ListSessionsRequest(page_size=page_size, page_token=page_token),
                                      timeout=timeout)

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
        stub = health_pb2_grpc.HealthStub(self._health_channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
