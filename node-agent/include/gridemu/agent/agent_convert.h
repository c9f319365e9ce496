// Conversions between the wire format (proto/gridemu/v1/agent.proto) and the
// agent's own types. Pure functions; thread-safe.
//
// The controller has its own copies (controller/shard_builder.h) because the
// controller never links node-agent code (DESIGN.md §1); both follow the proto's
// units: ratios in ppm (1 % = 10,000 ppm), times in ns, rates in bit/s.
#pragma once

#include <string>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

/// proto -> LinkProfile. Unset fields stay unset. Errors: kInvalidArgument for
/// an unknown delay_distribution or a ratio above 1,000,000 ppm, naming the field.
Result<LinkProfile> ProfileFromProto(const v1::LinkProfile& proto);
/// LinkProfile -> proto: ratios rounded to ppm, times to ns.
v1::LinkProfile ProfileToProto(const LinkProfile& profile);

/// A v1::Error for a non-ok status: code = StatusCodeName(), message.
v1::Error ErrorFromStatus(const Status& status);

/// Nanoseconds since the Unix epoch, now.
uint64_t UnixNanosNow();

}  // namespace gridemu::agent
