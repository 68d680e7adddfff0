#include "server/request_parse.h"

#include <map>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

#include "absl/strings/str_cat.h"
#include "core/common/utf8.h"

namespace titand {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Field path segment as the validators write it: a oneof member is prefixed with the oneof's name.
std::string Segment(const FieldDescriptor* f) {
  const auto* oneof = f->real_containing_oneof();
  return oneof ? absl::StrCat(oneof->name(), ".", f->name()) : f->name();
}

// The first string field (depth first, in wire order) whose bytes are ill-formed UTF-8, as an error;
// OK when there is none. `wire` is parsed schema-less (UnknownFieldSet checks no UTF-8), the
// descriptor says which length-delimited fields are strings or messages.
absl::Status FindBadUtf8(const std::string& wire, const Descriptor* d, const std::string& prefix, int depth) {
  UnknownFieldSet set;
  if (depth > 16 || !set.ParseFromString(wire)) return absl::OkStatus();
  std::map<int, int> index;  // repeated field occurrences so far
  for (int i = 0; i < set.field_count(); ++i) {
    const UnknownField& u = set.field(i);
    const FieldDescriptor* f = d->FindFieldByNumber(u.number());
    if (f == nullptr || u.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    std::string path = prefix.empty() ? Segment(f) : absl::StrCat(prefix, ".", Segment(f));
    if (f->is_repeated()) absl::StrAppend(&path, "[", index[u.number()]++, "]");
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      if (absl::Status s = CheckUtf8(u.length_delimited(), path); !s.ok()) return s;
    } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (absl::Status s = FindBadUtf8(u.length_delimited(), f->message_type(), path, depth + 1); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseRequest(const std::string& wire, google::protobuf::Message* out) {
  if (out->ParseFromString(wire)) return absl::OkStatus();
  if (absl::Status s = FindBadUtf8(wire, out->GetDescriptor(), "", 0); !s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat("malformed ", out->GetDescriptor()->full_name()));
}

}  // namespace titand
