// LinkProfile <-> wire format (proto/gridemu/v1/agent.proto), shared by the
// controller (which builds shards and events) and the agent (which applies
// them). Units follow the proto: ratios in ppm (1 % = 10,000 ppm), times in
// ns, rates in bit/s. Pure functions; thread-safe.
#pragma once

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu {

/// LinkProfile -> proto: unset fields stay unset; ratios rounded to ppm,
/// times to ns.
v1::LinkProfile LinkProfileToProto(const LinkProfile& profile);

/// proto -> LinkProfile, the inverse. Errors: kInvalidArgument naming the
/// field for an unknown delay_distribution or a ratio above 1,000,000 ppm.
Result<LinkProfile> LinkProfileFromProto(const v1::LinkProfile& proto);

}  // namespace gridemu
