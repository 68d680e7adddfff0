// Tokenizer input: the bundled model's tokenizer (models/SmolLM2-135M-Instruct.Q4_1.gguf) encodes
// arbitrary bytes (invalid UTF-8 included); the ids decode back to exactly the input (byte-level BPE is
// lossless), which the target checks. With the first byte 0xff the rest becomes a tokenizer.json folder
// instead, read by Tokenizer::FromHfDir.
#include <fstream>

#include "core/tokenizer/tokenizer.h"
#include "core/weights/gguf_file.h"
#include "fuzz/fuzz_util.h"

namespace {

const titand::Tokenizer& Bundled() {
  static const std::unique_ptr<titand::Tokenizer> tok = [] {
    auto f = titand::GgufFile::Open(TITAND_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!f.ok()) std::abort();
    auto t = titand::Tokenizer::FromGguf(**f);
    if (!t.ok()) std::abort();
    return std::move(t).value();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0 && data[0] == 0xff) {
    const std::string dir = titand::fuzz::ScratchDir() + "/hf";
    std::filesystem::create_directories(dir);
    titand::fuzz::WriteScratch("hf/tokenizer.json", data + 1, size - 1);
    auto t = titand::Tokenizer::FromHfDir(dir);
    if (t.ok()) (void)(*t)->Encode("Hello, world! 123");
    return 0;
  }
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = Bundled().Encode(text, /*parse_special=*/false);
  if (Bundled().Decode(ids) != text) std::abort();  // lossless round trip
  (void)Bundled().Encode(text, /*parse_special=*/true);
  return 0;
}
