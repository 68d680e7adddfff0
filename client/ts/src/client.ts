// TypeScript/Node client of titand.v1.Inference, loaded at run time from the same proto the server is
// built from (proto/titand/v1/inference.proto) with @grpc/proto-loader: no generated code to keep in sync.
//
// Session-affine routing: a session's state lives on ONE replica. Every call that names a session sends
// the metadata header `x-titand-session: <session id>`; the front proxy (deploy/base/envoy) hashes it
// onto a consistent-hash ring so that every turn of a session reaches the replica that holds it.
// For the same reason createSession() chooses the id on the client (a random UUID) unless one is given:
// a server-chosen id would be known only after the create had already been routed.
// Forks live on their source's replica: the affinity key is the part of a session id before its first
// '.', and forkSession() names a copy "<root>.<random>" so that it hashes where its source lives.
import { randomUUID } from "node:crypto";
import * as path from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const SESSION_HEADER = "x-titand-session";

export type FinishReason =
  | "FINISH_REASON_UNSPECIFIED" | "FINISH_REASON_MAX_TOKENS" | "FINISH_REASON_EOS"
  | "FINISH_REASON_STOP_SEQUENCE" | "FINISH_REASON_CANCELLED" | "FINISH_REASON_DEADLINE"
  | "FINISH_REASON_ERROR";

export interface SamplingParams {
  temperature?: number; topK?: number; topP?: number; minP?: number;
  repetitionPenalty?: number; seed?: number;
}

export interface StoppingCriteria {
  maxTokens?: number; stop?: string[]; stopTokenIds?: number[]; ignoreEos?: boolean;
}

export interface ChatMessage { role: "system" | "user" | "assistant"; content: string }

// Exactly one of text / tokens / chat.
export interface GenerateRequest {
  sessionId?: string;
  text?: string;
  tokens?: number[];
  chat?: ChatMessage[];
  sampling?: SamplingParams;
  stopping?: StoppingCriteria;
  requestId?: string;
  logprobs?: boolean;
  priority?: number;
}

export interface Usage { promptTokens: number; completionTokens: number; sessionTokens: number }
export interface Timing { queueSeconds: number; timeToFirstTokenSeconds: number; totalSeconds: number }

export interface GenerateResponse {
  tokenIds: number[];
  text: string;
  logprobs: number[];
  finishReason: FinishReason;
  usage: Usage | null;
  timing: Timing | null;
  sessionId: string;
}

export interface Completion {
  tokenIds: number[];
  text: string;
  logprobs: number[];
  finishReason: FinishReason;
  usage: Usage | null;
  timing: Timing | null;
  chunks: number;
}

export interface Session {
  id: string; historyTokens: number; stateBytes: number;
  tier: "SESSION_TIER_UNSPECIFIED" | "SESSION_TIER_DEVICE" | "SESSION_TIER_HOST" | "SESSION_TIER_DISK";
  busy: boolean; idleSeconds: number; createdUnix: number;
  error: string;  // "" = usable; else why the stored snapshot cannot be restored
}

export interface ModelInfo {
  modelId: string; modelPath: string; format: string; architecture: string; adapterId: string;
  vocabSize: number; numLayers: number; hiddenSize: number; eosTokenId: number; dtype: string;
  maxPromptTokens: number; maxNewTokens: number; maxQueue: number; maxRunning: number;
  weights: string; weightBytes: number;
}

export interface CallOptions {
  // Deadline in milliseconds from now.
  timeoutMs?: number;
  // Aborting the signal cancels the call (client-side cancellation: the server sees CANCELLED).
  signal?: AbortSignal;
}

export interface ClientOptions {
  credentials?: grpc.ChannelCredentials;
  // Path of inference.proto; default: the repository's proto/ folder.
  protoPath?: string;
  channelOptions?: grpc.ChannelOptions;
}

// A running Generate call: an async iterable of response chunks, cancellable at any time.
export class GenerationStream implements AsyncIterable<GenerateResponse> {
  constructor(private readonly call: grpc.ClientReadableStream<GenerateResponse>) {}

  cancel(): void { this.call.cancel(); }

  async *[Symbol.asyncIterator](): AsyncIterator<GenerateResponse> {
    for await (const chunk of this.call) yield chunk as GenerateResponse;
  }

  // Collects the whole stream into one Completion.
  async collect(): Promise<Completion> {
    const out: Completion = { tokenIds: [], text: "", logprobs: [], finishReason: "FINISH_REASON_UNSPECIFIED",
                              usage: null, timing: null, chunks: 0 };
    for await (const c of this) {
      out.chunks++;
      out.tokenIds.push(...c.tokenIds);
      out.text += c.text;
      out.logprobs.push(...c.logprobs);
      if (c.finishReason !== "FINISH_REASON_UNSPECIFIED") {
        out.finishReason = c.finishReason;
        out.usage = c.usage;
        out.timing = c.timing;
      }
    }
    return out;
  }
}

function defaultProtoRoot(): string {
  // dist/src/client.js -> <repo>/proto ; src/client.ts (ts-node) -> <repo>/proto
  const here = __dirname;
  const up = here.includes(`${path.sep}dist${path.sep}`) ? ["..", "..", "..", ".."] : ["..", "..", ".."];
  return path.resolve(here, ...up, "proto");
}

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions,
                        cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall;

export class TitandClient {
  private readonly stub: grpc.Client & Record<string, any>;

  constructor(readonly address: string, options: ClientOptions = {}) {
    const root = options.protoPath ? path.dirname(path.dirname(path.dirname(options.protoPath)))
                                   : defaultProtoRoot();
    const def = protoLoader.loadSync("titand/v1/inference.proto", {
      includeDirs: [root], keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const Ctor = pkg.titand.v1.Inference as typeof grpc.Client;
    this.stub = new Ctor(address, options.credentials ?? grpc.credentials.createInsecure(),
                         options.channelOptions ?? {}) as any;
  }

  close(): void { this.stub.close(); }

  // The affinity key of a session id: its part before the first '.' (forks share their root's key).
  static affinityKey(sessionId: string): string {
    const dot = sessionId.indexOf(".");
    return dot < 0 ? sessionId : sessionId.slice(0, dot);
  }

  // Metadata carrying the session-affinity header (absent for stateless calls).
  static sessionMetadata(sessionId?: string): grpc.Metadata {
    const md = new grpc.Metadata();
    if (sessionId) md.set(SESSION_HEADER, TitandClient.affinityKey(sessionId));
    return md;
  }

  generate(req: GenerateRequest, opts: CallOptions = {}): GenerationStream {
    const msg: Record<string, unknown> = {
      sessionId: req.sessionId ?? "", sampling: req.sampling ?? {}, stopping: req.stopping ?? {},
      requestId: req.requestId ?? "", logprobs: req.logprobs ?? false, priority: req.priority ?? 0,
    };
    const forms = [req.text !== undefined, req.tokens !== undefined, req.chat !== undefined].filter(Boolean);
    if (forms.length !== 1) throw new Error("generate: give exactly one of text, tokens, chat");
    if (req.text !== undefined) msg.text = req.text;
    if (req.tokens !== undefined) msg.tokens = { ids: req.tokens };
    if (req.chat !== undefined) msg.chat = { messages: req.chat };
    const call = this.stub.Generate(msg, TitandClient.sessionMetadata(req.sessionId), this.callOptions(opts));
    if (opts.signal) {
      if (opts.signal.aborted) call.cancel();
      else opts.signal.addEventListener("abort", () => call.cancel(), { once: true });
    }
    return new GenerationStream(call);
  }

  complete(req: GenerateRequest, opts: CallOptions = {}): Promise<Completion> {
    return this.generate(req, opts).collect();
  }

  // sessionId omitted: a random UUID chosen here, so that the create is routed like every later turn.
  createSession(sessionId: string = randomUUID(), opts: CallOptions = {}): Promise<Session> {
    return this.unary("CreateSession", { sessionId }, sessionId, opts);
  }

  getSession(sessionId: string, opts: CallOptions = {}): Promise<Session> {
    return this.unary("GetSession", { sessionId }, sessionId, opts);
  }

  // Sessions of the replica this call reaches (behind a proxy: one replica, not the whole service).
  async listSessions(opts: CallOptions = {}): Promise<Session[]> {
    const res = await this.unary<{ sessions: Session[] }>("ListSessions", {}, undefined, opts);
    return res.sessions;
  }

  async deleteSession(sessionId: string, opts: CallOptions = {}): Promise<void> {
    await this.unary("DeleteSession", { sessionId }, sessionId, opts);
  }

  // The copy lives on the source's replica; its default id "<root>.<random>" keeps the source's affinity key.
  forkSession(sessionId: string, newSessionId?: string, opts: CallOptions = {}): Promise<Session> {
    newSessionId ??= `${TitandClient.affinityKey(sessionId)}.${randomUUID().slice(0, 8)}`;
    return this.unary("ForkSession", { sessionId, newSessionId }, sessionId, opts);
  }

  // Cancels a request by its client-chosen request id (server side; the stream ends CANCELLED).
  async abort(requestId: string, sessionId?: string, opts: CallOptions = {}): Promise<void> {
    await this.unary("Abort", { requestId }, sessionId, opts);
  }

  modelInfo(opts: CallOptions = {}): Promise<ModelInfo> {
    return this.unary("GetModelInfo", {}, undefined, opts);
  }

  private callOptions(opts: CallOptions): grpc.CallOptions {
    return opts.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs } : {};
  }

  private unary<Res>(method: string, req: object, sessionId: string | undefined, opts: CallOptions): Promise<Res> {
    const fn = this.stub[method].bind(this.stub) as Unary<object, Res>;
    return new Promise<Res>((resolve, reject) => {
      const call = fn(req, TitandClient.sessionMetadata(sessionId), this.callOptions(opts), (err, res) => {
        if (err) reject(err); else resolve(res);
      });
      opts.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }
}

export { grpc };
