// Parsing a request message from its wire bytes with a clear error. proto3 `string` fields must hold
// well-formed UTF-8; protobuf refuses the whole message otherwise, and gRPC's generated handler then
// answers UNIMPLEMENTED with an empty message. Generate is registered as a raw method instead
// (inference_service.h) and parsed here: a string field with ill-formed UTF-8 is INVALID_ARGUMENT
// naming the field as the validators do ("input.chat.messages[1].content: invalid UTF-8 at byte 3");
// anything else unparsable is INVALID_ARGUMENT "malformed <message type>".
#pragma once

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"

namespace titand {

absl::Status ParseRequest(const std::string& wire, google::protobuf::Message* out);

}  // namespace titand
