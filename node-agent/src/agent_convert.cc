#include "gridemu/node-agent/agent_convert.h"

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

}  // namespace gridemu::agent
