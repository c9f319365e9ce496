#include "gridemu/agent/agent_convert.h"

#include <chrono>
#include <cmath>
#include <limits>

namespace gridemu::agent {


v1::Error ErrorFromStatus(const Status& status) {
  v1::Error e;
  e.set_code(std::string(StatusCodeName(status.code())));
  e.set_message(status.message());
  return e;
}

uint64_t UnixNanosNow() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace gridemu::agent
