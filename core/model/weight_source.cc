#include "core/model/weight_source.h"

#include <cstring>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/common/status.h"
#include "core/weights/dequant.h"
#include "core/weights/gguf_file.h"
#include "core/weights/safetensors_file.h"

namespace titand {
namespace {

at::Tensor FromFloats(std::vector<float>&& data, std::vector<int64_t> shape) {
  auto owned = std::make_shared<std::vector<float>>(std::move(data));
  at::Tensor t = at::from_blob(owned->data(), shape, [owned](void*) {}, at::kFloat);
  return t.clone();
}

// Hugging Face name -> GGUF name for the Llama family.
std::string GgufName(const std::string& hf) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  for (const auto& [h, g] : kTop) {
    if (hf == h) return g;
  }
  static const std::regex kLayer(R"(model\.layers\.(\d+)\.(.+))");
  static const std::pair<const char*, const char*> kPerLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},       {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},       {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},           {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},           {"self_attn.o_proj.bias", "attn_output.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},  {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},        {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  std::smatch m;
  if (std::regex_match(hf, m, kLayer)) {
    for (const auto& [h, g] : kPerLayer) {
      if (m[2] == h) return absl::StrCat("blk.", m[1].str(), ".", g);
    }
  }
  return "";
}

class GgufWeights : public WeightSource {
 public:
  GgufWeights(std::unique_ptr<GgufFile> f, ModelConfig c) : file_(std::move(f)), config_(std::move(c)) {}

  bool Has(const std::string& hf) const override {
    std::string g = GgufName(hf);
    return !g.empty() && file_->FindTensor(g) != nullptr;
  }

  absl::StatusOr<at::Tensor> Take(const std::string& hf) override {
    std::string g = GgufName(hf);
    const GgufTensorInfo* info = g.empty() ? nullptr : file_->FindTensor(g);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(file_->path(), ": missing tensor ", g.empty() ? hf : g));
    }
    std::vector<float> data;
    RETURN_IF_ERROR(file_->ReadAsFloat(*info, &data));
    std::vector<int64_t> shape(info->shape.rbegin(), info->shape.rend());
    if (config_.gguf_qk_permuted && (hf.find("q_proj") != std::string::npos ||
                                     hf.find("k_proj") != std::string::npos)) {
      const int heads = hf.find("q_proj") != std::string::npos ? config_.num_heads : config_.num_kv_heads;
      const int64_t rows = shape[0];
      const int64_t cols = shape.size() > 1 ? shape[1] : 1;
      UnpermuteQK(data.data(), rows, cols, heads);
    }
    used_.insert(info->name);
    return FromFloats(std::move(data), shape);
  }

  std::optional<GgmlType> StoredType(const std::string& hf) const override {
    std::string g = GgufName(hf);
    const GgufTensorInfo* info = g.empty() ? nullptr : file_->FindTensor(g);
    if (info == nullptr) return std::nullopt;
    return info->type;
  }

  absl::StatusOr<RawTensor> TakeRaw(const std::string& hf) override {
    std::string g = GgufName(hf);
    const GgufTensorInfo* info = g.empty() ? nullptr : file_->FindTensor(g);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(file_->path(), ": missing tensor ", g.empty() ? hf : g));
    }
    if (info->shape.size() > 2) return absl::InvalidArgumentError(absl::StrCat(info->name, ": raw access is 2-D only"));
    RawTensor raw;
    raw.type = info->type;
    raw.shape.assign(info->shape.rbegin(), info->shape.rend());
    const int64_t rows = raw.shape.size() > 1 ? raw.shape[0] : 1;
    const size_t row_bytes = info->nbytes / static_cast<size_t>(rows);
    const uint8_t* src = file_->data(*info);
    raw.bytes.assign(src, src + info->nbytes);
    if (config_.gguf_qk_permuted && (hf.find("q_proj") != std::string::npos ||
                                     hf.find("k_proj") != std::string::npos)) {
      // Row r of the result is source row perm[r]: UnpermuteQK applied to the row indices themselves.
      const int heads = hf.find("q_proj") != std::string::npos ? config_.num_heads : config_.num_kv_heads;
      std::vector<float> perm(rows);
      for (int64_t r = 0; r < rows; ++r) perm[r] = static_cast<float>(r);
      UnpermuteQK(perm.data(), rows, 1, heads);
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(raw.bytes.data() + r * row_bytes, src + static_cast<int64_t>(perm[r]) * row_bytes, row_bytes);
      }
    }
    used_.insert(info->name);
    return raw;
  }

  std::vector<std::string> Unused() const override {
    std::vector<std::string> out;
    for (const auto& t : file_->tensors()) {
      if (!used_.count(t.name)) out.push_back(t.name);
    }
    return out;
  }
  std::string Describe() const override { return file_->path(); }

 private:
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  std::set<std::string> used_;
};

class SafetensorsWeights : public WeightSource {
 public:
  SafetensorsWeights(std::string dir, std::vector<std::unique_ptr<SafetensorsFile>> files)
      : dir_(std::move(dir)), files_(std::move(files)) {}

  bool Has(const std::string& name) const override { return Find(name).second != nullptr; }

  absl::StatusOr<at::Tensor> Take(const std::string& name) override {
    auto [file, t] = Find(name);
    if (t == nullptr) return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor ", name));
    std::vector<float> data;
    RETURN_IF_ERROR(file->ReadAsFloat(*t, &data));
    used_.insert(name);
    return FromFloats(std::move(data), t->shape);
  }

  std::vector<std::string> Unused() const override {
    std::vector<std::string> out;
    for (const auto& f : files_) {
      for (const auto& t : f->tensors()) {
        if (!used_.count(t.name)) out.push_back(t.name);
      }
    }
    return out;
  }
  std::string Describe() const override { return dir_; }

 private:
  std::pair<const SafetensorsFile*, const SafetensorsTensor*> Find(const std::string& name) const {
    for (const auto& f : files_) {
      if (const SafetensorsTensor* t = f->Find(name)) return {f.get(), t};
    }
    return {nullptr, nullptr};
  }
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::set<std::string> used_;
};

class MapWeights : public WeightSource {
 public:
  explicit MapWeights(std::map<std::string, at::Tensor> t) : tensors_(std::move(t)) {}
  bool Has(const std::string& name) const override { return tensors_.count(name) > 0; }
  absl::StatusOr<at::Tensor> Take(const std::string& name) override {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) return absl::NotFoundError(absl::StrCat("missing tensor ", name));
    used_.insert(name);
    return it->second.to(at::kFloat);
  }
  std::vector<std::string> Unused() const override {
    std::vector<std::string> out;
    for (const auto& [name, t] : tensors_) {
      if (!used_.count(name)) out.push_back(name);
    }
    return out;
  }
  std::string Describe() const override { return "in-memory weights"; }

 private:
  std::map<std::string, at::Tensor> tensors_;
  std::set<std::string> used_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<WeightSource>> OpenGgufWeights(const std::string& path, const ModelConfig& config) {
  ASSIGN_OR_RETURN(auto file, GgufFile::Open(path));
  return std::unique_ptr<WeightSource>(new GgufWeights(std::move(file), config));
}

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensorsWeights(const std::string& dir) {
  ASSIGN_OR_RETURN(auto paths, ListSafetensorsFiles(dir));
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const auto& p : paths) {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(p));
    files.push_back(std::move(f));
  }
  return std::unique_ptr<WeightSource>(new SafetensorsWeights(dir, std::move(files)));
}

std::unique_ptr<WeightSource> MakeMapWeights(std::map<std::string, at::Tensor> tensors) {
  return std::make_unique<MapWeights>(std::move(tensors));
}

}  // namespace titand
