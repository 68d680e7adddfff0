// Test helper: dumps a GGUF file as seen by titand's reader, for comparison with gguf-py.
//   gguf_dump FILE OUTDIR [--filter SUBSTR] [--unpermute-qk]
//     OUTDIR/index.json: {"version", "alignment", "tensors": [{"name", "type", "shape" (C order),
//     "ggml_shape", "file"}]} and OUTDIR/<file> = the tensor dequantised to little-endian float32.
//     --filter keeps tensors whose name contains SUBSTR; --unpermute-qk applies UnpermuteQK to
//     "*attn_q.weight" (n_head = <arch>.attention.head_count) and "*attn_k.weight" (head_count_kv).
//   gguf_dump --safetensors FILE OUTDIR
//     the same index.json + .bin layout for a safetensors file ("type" is its dtype, no "ggml_shape");
//     index.json also holds "metadata" (the __metadata__ map).
//   gguf_dump --meta FILE
//     prints the metadata as JSON: {key: {"type", "value"[, "elem_type"]}}; a nested array element is
//     itself {"type": "ARRAY", "elem_type", "value"}.
#include <cstdio>
#include <string>
#include <vector>

#include "core/weights/dequant.h"
#include "core/weights/gguf_file.h"
#include "core/weights/safetensors_file.h"
#include "nlohmann/json.hpp"

namespace {

using titand::GgufFile;
using titand::GgufValue;
using Json = nlohmann::ordered_json;

Json Raw(const GgufValue& v);

Json Typed(const GgufValue& v) {
  Json j = {{"type", titand::GgufKindName(v.kind)}};
  if (v.kind == GgufValue::Kind::kArray) j["elem_type"] = titand::GgufKindName(v.elem_kind);
  j["value"] = Raw(v);
  return j;
}

Json Raw(const GgufValue& v) {
  switch (v.kind) {
    case GgufValue::Kind::kBool: return Json(v.u != 0);
    case GgufValue::Kind::kString: return Json(v.str);
    case GgufValue::Kind::kArray: {
      Json a = Json::array();
      for (const GgufValue& e : v.array) a.push_back(e.kind == GgufValue::Kind::kArray ? Typed(e) : Raw(e));
      return a;
    }
    default: break;
  }
  if (v.IsUnsignedInt()) return Json(v.u);
  if (v.IsSignedInt()) return Json(v.i);
  return Json(v.f);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "gguf_dump: %s\n", msg.c_str());
  return 1;
}

int DumpMeta(const GgufFile& f) {
  Json out = Json::object();
  for (const std::string& key : f.MetadataKeys()) out[key] = Typed(*f.Find(key));
  const std::string text = out.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

// Writes buf to OUTDIR/<file>; false on failure.
bool WriteBin(const std::string& outdir, const std::string& file, const std::vector<float>& buf) {
  FILE* fp = std::fopen((outdir + "/" + file).c_str(), "wb");
  if (fp == nullptr) return false;
  const bool ok = buf.empty() || std::fwrite(buf.data(), 4, buf.size(), fp) == buf.size();
  return std::fclose(fp) == 0 && ok;
}

int WriteIndex(const std::string& outdir, const Json& index) {
  FILE* fp = std::fopen((outdir + "/index.json").c_str(), "wb");
  if (fp == nullptr) return Fail("cannot write " + outdir + "/index.json");
  const std::string text = index.dump(-1, ' ', false, Json::error_handler_t::replace);
  const bool ok = std::fwrite(text.data(), 1, text.size(), fp) == text.size();
  if (std::fclose(fp) != 0 || !ok) return Fail("write failed: index.json");
  return 0;
}

int DumpSafetensors(const std::string& path, const std::string& outdir) {
  auto f = titand::SafetensorsFile::Open(path);
  if (!f.ok()) return Fail(f.status().ToString());
  Json index = {{"metadata", (*f)->metadata()}, {"tensors", Json::array()}};
  std::vector<float> buf;
  int k = 0;
  for (const titand::SafetensorsTensor& t : (*f)->tensors()) {
    absl::Status st = (*f)->ReadAsFloat(t, &buf);
    if (!st.ok()) return Fail(st.ToString());
    const std::string file = "t" + std::to_string(k++) + ".bin";
    if (!WriteBin(outdir, file, buf)) return Fail("write failed: " + outdir + "/" + file);
    index["tensors"].push_back(
        {{"name", t.name}, {"type", titand::StDtypeName(t.dtype)}, {"shape", t.shape}, {"file", file}});
  }
  return WriteIndex(outdir, index);
}

int DumpTensors(const GgufFile& f, const std::string& outdir, const std::string& filter, bool unpermute) {
  int64_t n_head = 0, n_head_kv = 0;
  if (unpermute) {
    auto arch = f.GetString("general.architecture");
    if (!arch.ok()) return Fail(arch.status().ToString());
    auto h = f.GetInt(*arch + ".attention.head_count");
    auto hkv = f.GetInt(*arch + ".attention.head_count_kv");
    if (!h.ok()) return Fail(h.status().ToString());
    n_head = *h;
    n_head_kv = hkv.ok() ? *hkv : n_head;
  }
  Json index = {{"version", f.version()}, {"alignment", f.alignment()}, {"tensors", Json::array()}};
  std::vector<float> buf;
  int k = 0;
  for (const titand::GgufTensorInfo& t : f.tensors()) {
    if (!filter.empty() && t.name.find(filter) == std::string::npos) continue;
    absl::Status st = f.ReadAsFloat(t, &buf);
    if (!st.ok()) return Fail(st.ToString());
    std::vector<int64_t> c_shape(t.shape.rbegin(), t.shape.rend());
    const bool is_q = EndsWith(t.name, "attn_q.weight"), is_k = EndsWith(t.name, "attn_k.weight");
    if (unpermute && (is_q || is_k)) {
      const int heads = static_cast<int>(is_q ? n_head : n_head_kv);
      const int64_t rows = c_shape.empty() ? 1 : c_shape[0];
      const int64_t cols = rows == 0 ? 0 : t.numel() / rows;
      if (heads <= 0 || rows % (2 * heads) != 0) return Fail(t.name + ": rows not divisible by 2*heads");
      titand::UnpermuteQK(buf.data(), rows, cols, heads);
    }
    const std::string file = "t" + std::to_string(k++) + ".bin";
    if (!WriteBin(outdir, file, buf)) return Fail("write failed: " + outdir + "/" + file);
    index["tensors"].push_back({{"name", t.name},
                                {"type", titand::GgmlTypeName(t.type)},
                                {"shape", c_shape},
                                {"ggml_shape", t.shape},
                                {"file", file}});
  }
  return WriteIndex(outdir, index);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* usage =
      "usage: gguf_dump FILE OUTDIR [--filter SUBSTR] [--unpermute-qk] | gguf_dump --meta FILE | "
      "gguf_dump --safetensors FILE OUTDIR";
  if (args.size() == 2 && args[0] == "--meta") {
    auto f = GgufFile::Open(args[1]);
    if (!f.ok()) return Fail(f.status().ToString());
    return DumpMeta(**f);
  }
  if (args.size() == 3 && args[0] == "--safetensors") return DumpSafetensors(args[1], args[2]);
  if (args.size() < 2 || args[0].rfind("--", 0) == 0) return Fail(usage);
  std::string filter;
  bool unpermute = false;
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--filter" && i + 1 < args.size()) {
      filter = args[++i];
    } else if (args[i] == "--unpermute-qk") {
      unpermute = true;
    } else {
      return Fail(usage);
    }
  }
  auto f = GgufFile::Open(args[0]);
  if (!f.ok()) return Fail(f.status().ToString());
  return DumpTensors(**f, args[1], filter, unpermute);
}
