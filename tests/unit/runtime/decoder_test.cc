// The decoding core (core/runtime/decoder.h) driven with logits that force a chosen token sequence:
// finish reasons, stop-string / stop-id text rules (OpenAI semantics: excluded unless
// include_stop_str_in_output), held-back partial stop strings, and delta concatenation.
#include "core/runtime/decoder.h"

#include <gtest/gtest.h>

#include <memory>

#include "core/tokenizer/byte_map.h"

namespace titand {
namespace {

constexpr int32_t kImEnd = 257;

std::unique_ptr<Tokenizer> ByteTokenizer() {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(BytesToTokenSpelling(std::string(1, static_cast<char>(b))));
  spec.tokens.push_back("<|im_start|>");
  spec.tokens.push_back("<|im_end|>");
  spec.token_types.assign(256, kTokenNormal);
  spec.token_types.push_back(kTokenControl);
  spec.token_types.push_back(kTokenControl);
  spec.eos_id = kImEnd;
  return std::move(Tokenizer::Create(std::move(spec))).value();
}

struct Outcome {
  std::vector<int32_t> ids;
  std::vector<std::string> deltas;
  std::string text;
  FinishReason finish = FinishReason::kMaxTokens;
};

// Feeds one-hot logits for `script` (greedy picks each in turn) until the decoder says done.
Outcome Drive(const Tokenizer& tok, const DecodeParams& p, const std::vector<int32_t>& script) {
  Decoder d(&tok, p, {});
  Outcome r;
  for (int32_t want : script) {
    std::vector<float> logits(tok.vocab_size(), 0.f);
    logits[want] = 10.f;
    TokenOutcome o = d.Next(logits.data(), logits.size());
    EXPECT_EQ(o.id, want);
    r.ids.push_back(o.id);
    r.deltas.push_back(o.delta);
    r.text += o.delta;
    if (o.done) {
      r.finish = o.finish;
      break;
    }
  }
  EXPECT_EQ(r.text, d.delivered_text());
  return r;
}

std::vector<int32_t> Bytes(const std::string& s) {
  std::vector<int32_t> ids;
  for (char c : s) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

TEST(DecoderTest, StopStringAcrossTokensExcludedByDefaultIncludedOnRequest) {
  auto tok = ByteTokenizer();
  DecodeParams p;
  p.stop.stop_strings = {"STOP"};
  const auto script = Bytes("abcSTOPxyz");
  Outcome r = Drive(*tok, p, script);
  EXPECT_EQ(r.finish, FinishReason::kStopSequence);
  EXPECT_EQ(r.text, "abc");
  EXPECT_EQ(r.ids, Bytes("abcSTOP"));  // every generated token is output
  EXPECT_EQ(r.deltas[3], "");          // "S" held back: it could start the stop string
  p.stop.include_stop_str_in_output = true;
  r = Drive(*tok, p, script);
  EXPECT_EQ(r.text, "abcSTOP");
  // A held-back prefix that does not complete is released.
  r = Drive(*tok, p, Bytes("STx"));
  EXPECT_EQ(r.text, "STx");
}

TEST(DecoderTest, EarliestEndingStopWins) {
  auto tok = ByteTokenizer();
  DecodeParams p;
  p.stop.stop_strings = {"abcd", "bc"};
  p.stop.include_stop_str_in_output = true;
  Outcome r = Drive(*tok, p, Bytes("xabcdz"));
  EXPECT_EQ(r.text, "xabc");
  EXPECT_EQ(r.finish, FinishReason::kStopSequence);
}

TEST(DecoderTest, StopTokenIdIsStopSequenceAndEosIsEos) {
  auto tok = ByteTokenizer();
  DecodeParams p;
  p.stop.stop_token_ids = {'!'};
  Outcome r = Drive(*tok, p, Bytes("hi!more"));
  EXPECT_EQ(r.finish, FinishReason::kStopSequence);
  EXPECT_EQ(r.ids, Bytes("hi!"));
  EXPECT_EQ(r.text, "hi");
  p.stop.include_stop_str_in_output = true;
  EXPECT_EQ(Drive(*tok, p, Bytes("hi!more")).text, "hi!");
  // The end-of-turn id: EOS, no text; a stop id listed by the request wins (STOP_SEQUENCE).
  DecodeParams q;
  r = Drive(*tok, q, {'o', 'k', kImEnd, 'z'});
  EXPECT_EQ(r.finish, FinishReason::kEos);
  EXPECT_EQ(r.text, "ok");
  q.stop.stop_token_ids = {kImEnd};
  EXPECT_EQ(Drive(*tok, q, {'o', kImEnd}).finish, FinishReason::kStopSequence);
  // ignore_eos: the end-of-turn id is just a token.
  DecodeParams g;
  g.stop.ignore_eos = true;
  g.stop.max_tokens = 4;
  r = Drive(*tok, g, {'o', kImEnd, 'k', 'z', 'q'});
  EXPECT_EQ(r.finish, FinishReason::kMaxTokens);
  EXPECT_EQ(r.ids.size(), 4u);
  EXPECT_EQ(r.text, "okz");
}

TEST(DecoderTest, MaxTokensFlushesAnUnfinishedCharacter) {
  auto tok = ByteTokenizer();
  DecodeParams p;
  p.stop.max_tokens = 3;
  const std::string euro = "\xE2\x82\xAC";  // U+20AC, 3 bytes
  Outcome r = Drive(*tok, p, Bytes("a" + euro));  // cut after 2 of its 3 bytes
  EXPECT_EQ(r.finish, FinishReason::kMaxTokens);
  EXPECT_EQ(r.text, "a\xEF\xBF\xBD");  // U+FFFD, as a "replace" decode of the bytes gives
  p.stop.max_tokens = 4;
  EXPECT_EQ(Drive(*tok, p, Bytes("a" + euro)).text, "a" + euro);
}

}  // namespace
}  // namespace titand
