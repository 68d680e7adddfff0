// End-to-end run of the TypeScript client against a LIVE titand (started by tests/py/test_ts_client.py).
// Usage: node dist/test/e2e.js HOST:PORT
// Checks what it can on its own (stream shape, session bookkeeping, cancellation) and prints one JSON
// document with the token ids it got, which the Python test compares with the Python client's answers.
import * as assert from "node:assert/strict";

import { SESSION_HEADER, TitandClient, grpc } from "../src/client";

const MAX_NEW = 6;
const greedy = { maxTokens: MAX_NEW, ignoreEos: true };

function expectCode(err: unknown, code: grpc.status, what: string): void {
  assert.ok(err && typeof err === "object" && "code" in err, `${what}: expected a gRPC error, got ${err}`);
  assert.equal((err as grpc.ServiceError).code, code, `${what}: ${(err as unknown as Error).message}`);
}

async function main(): Promise<void> {
  const address = process.argv[2];
  if (!address) throw new Error("usage: e2e.js HOST:PORT");
  const c = new TitandClient(address);
  const out: Record<string, unknown> = {};

  // The affinity header: the session id's root (before the first '.'), absent when stateless.
  assert.equal(TitandClient.sessionMetadata("abc.f1").get(SESSION_HEADER)[0], "abc");
  assert.equal(TitandClient.sessionMetadata("abc").get(SESSION_HEADER)[0], "abc");
  assert.equal(TitandClient.sessionMetadata(undefined).get(SESSION_HEADER).length, 0);

  const info = await c.modelInfo({ timeoutMs: 10000 });
  out.model = { architecture: info.architecture, numLayers: info.numLayers, vocabSize: info.vocabSize };

  // 1. Stateless streaming: every chunk carries tokens, the last one the finish reason and usage.
  const prompt1 = [1000, 2000, 3000, 4000, 5000];
  const chunks: number[][] = [];
  let last = null as null | { finishReason: string; usage: unknown };
  for await (const ch of c.generate({ tokens: prompt1, stopping: greedy, logprobs: true }, { timeoutMs: 120000 })) {
    chunks.push(ch.tokenIds);
    assert.equal(ch.logprobs.length, ch.tokenIds.length, "one logprob per token");
    if (ch.finishReason !== "FINISH_REASON_UNSPECIFIED") last = ch;
  }
  assert.ok(last, "stream ended without a final message");
  assert.equal(last.finishReason, "FINISH_REASON_MAX_TOKENS");
  out.stateless = chunks.flat();
  assert.equal((out.stateless as number[]).length, MAX_NEW);

  // 2. A session over two turns; each turn sends only its new tokens.
  const sid = `ts-e2e-${process.pid}`;
  const s = await c.createSession(sid);
  assert.equal(s.id, sid);
  assert.equal(s.historyTokens, 0);
  const turnA = [1200, 1300, 1400];
  const turnB = [2200, 2300, 2400, 2500];
  const a = await c.complete({ sessionId: sid, tokens: turnA, stopping: greedy }, { timeoutMs: 120000 });
  assert.equal(a.finishReason, "FINISH_REASON_MAX_TOKENS");
  assert.equal(a.usage?.sessionTokens, turnA.length + MAX_NEW);
  // Fork after turn A: the copy must continue exactly as the original does.
  const fork = await c.forkSession(sid);
  assert.ok(fork.id.startsWith(`${sid}.`), `fork id ${fork.id} keeps the affinity root`);
  assert.equal(fork.historyTokens, turnA.length + MAX_NEW);
  const b = await c.complete({ sessionId: sid, tokens: turnB, stopping: greedy }, { timeoutMs: 120000 });
  const fb = await c.complete({ sessionId: fork.id, tokens: turnB, stopping: greedy }, { timeoutMs: 120000 });
  assert.deepEqual(fb.tokenIds, b.tokenIds, "fork continues like its source");
  assert.equal(b.usage?.sessionTokens, turnA.length + turnB.length + 2 * MAX_NEW);
  const got = await c.getSession(sid);
  assert.equal(got.historyTokens, turnA.length + turnB.length + 2 * MAX_NEW);
  assert.ok(got.stateBytes > 0);
  const listed = (await c.listSessions()).map((x) => x.id);
  assert.ok(listed.includes(sid) && listed.includes(fork.id), `list: ${listed}`);
  out.session = { id: sid, turns: [[turnA, a.tokenIds], [turnB, b.tokenIds]], stateBytes: got.stateBytes };
  await c.deleteSession(fork.id);
  await c.deleteSession(sid);
  await c.getSession(sid).then(() => assert.fail("deleted session still exists"),
                               (e) => expectCode(e, grpc.status.NOT_FOUND, "get deleted"));

  // 3. Chat input, text streamed.
  const chat = await c.complete({ chat: [{ role: "user", content: "Say hello." }], stopping: { maxTokens: 4 } },
                                { timeoutMs: 120000 });
  assert.ok(chat.tokenIds.length >= 1 && chat.tokenIds.length <= 4);
  out.chat = { tokenIds: chat.tokenIds, text: chat.text };

  // 4. Cancellation, three ways, each on a generation that would otherwise run for a long time.
  const long = { maxTokens: 2000, ignoreEos: true };
  //   a) cancel() after the first chunk: the iterator fails with CANCELLED.
  const st = c.generate({ tokens: prompt1, stopping: long }, { timeoutMs: 120000 });
  let seen = 0;
  try {
    for await (const ch of st) { seen += ch.tokenIds.length; if (seen > 0) st.cancel(); }
    assert.fail("cancelled stream ended normally");
  } catch (e) { expectCode(e, grpc.status.CANCELLED, "cancel()"); }
  //   b) an AbortSignal.
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  await c.complete({ tokens: prompt1, stopping: long }, { signal: ac.signal, timeoutMs: 120000 })
    .then(() => assert.fail("aborted call finished"), (e) => expectCode(e, grpc.status.CANCELLED, "AbortSignal"));
  //   c) the Abort RPC by request id: the stream ends normally with finish reason CANCELLED.
  const rid = `ts-abort-${process.pid}`;
  const st2 = c.generate({ tokens: prompt1, stopping: long, requestId: rid }, { timeoutMs: 120000 });
  let aborted = false, tokens2 = 0, finish2 = "";
  for await (const ch of st2) {
    tokens2 += ch.tokenIds.length;
    if (!aborted && tokens2 > 0) { aborted = true; await c.abort(rid); }
    if (ch.finishReason !== "FINISH_REASON_UNSPECIFIED") finish2 = ch.finishReason;
  }
  assert.equal(finish2, "FINISH_REASON_CANCELLED");
  assert.ok(tokens2 < 2000);
  await c.abort("no-such-request").then(() => assert.fail("abort of unknown id succeeded"),
                                        (e) => expectCode(e, grpc.status.NOT_FOUND, "abort unknown"));
  out.cancel = { abortRpcTokens: tokens2 };

  // 5. Errors map to codes: an unknown session.
  await c.complete({ sessionId: "no-such-session", tokens: [1], stopping: greedy })
    .then(() => assert.fail("unknown session accepted"), (e) => expectCode(e, grpc.status.NOT_FOUND, "unknown session"));

  c.close();

  // 6. Optional: a recorder server (argv[3]) that answers UNIMPLEMENTED and logs the metadata of every
  // call, so that the test can see the affinity header on the wire.
  if (process.argv[3]) {
    const r = new TitandClient(process.argv[3]);
    const swallow = (p: Promise<unknown>) => p.then(() => assert.fail("recorder answered"),
                                                   (e) => expectCode(e, grpc.status.UNIMPLEMENTED, "recorder"));
    await swallow(r.createSession("rootA"));
    await swallow(r.getSession("rootA.f1"));
    await swallow(r.forkSession("rootA.f1", "rootA.f2"));
    await swallow(r.complete({ tokens: [1], stopping: greedy }));
    await swallow(r.complete({ sessionId: "rootB.x", tokens: [1], stopping: greedy }));
    r.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stderr.write(`e2e failed: ${e instanceof Error ? e.stack : e}\n`);
  process.exit(1);
});
