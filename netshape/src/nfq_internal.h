// Private NFQUEUE helpers (libnetfilter_queue's libmnl-based API).
#pragma once

#include <cstdint>

#include "gridemu/common/status.h"
#include "internal.h"

namespace gridemu::netshape {

/// Opens a NETLINK_NETFILTER socket in the calling thread's current namespace and binds
/// queue `queue_num` to it with copy mode NFQNL_COPY_PACKET / `copy_range` bytes and
/// `max_len` packets, fail closed (no NFQA_CFG_F_FAIL_OPEN), waiting for each ack.
/// Errors: kUnavailable "... Device or resource busy" when the number is taken,
/// kNotFound/kUnimplemented when nfnetlink_queue is missing, kPermissionDenied.
Result<UniqueFd> BindNfQueue(uint16_t queue_num, uint32_t copy_range, uint32_t max_len);

}  // namespace gridemu::netshape
