// Conversions between the wire format (proto/gridemu/v1/agent.proto) and the
// agent's own types. Pure functions; thread-safe.
//
// The LinkProfile conversions themselves live in the proto module
// (gridemu/proto/link_profile_convert.h), shared with the controller.
#pragma once

#include <string>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/proto/link_profile_convert.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

/// proto -> LinkProfile. Unset fields stay unset. Errors: kInvalidArgument for
/// an unknown delay_distribution or a ratio above 1,000,000 ppm, naming the field.
inline Result<LinkProfile> ProfileFromProto(const v1::LinkProfile& proto) {
  return LinkProfileFromProto(proto);
}
/// LinkProfile -> proto: ratios rounded to ppm, times to ns.
inline v1::LinkProfile ProfileToProto(const LinkProfile& profile) {
  return LinkProfileToProto(profile);
}

/// A v1::Error for a non-ok status: code = StatusCodeName(), message.
v1::Error ErrorFromStatus(const Status& status);

/// The base name of a task's output files (<name>.stdout, <name>.stderr):
/// the task id with every character other than [A-Za-z0-9._-] as '_', and a
/// leading '_' when it is empty or starts with '.'. "leech/7" -> "leech_7".
std::string TaskFileName(const std::string& task_id);

}  // namespace gridemu::agent
