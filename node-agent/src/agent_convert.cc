#include "gridemu/node-agent/agent_convert.h"

#include <cctype>
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

std::string TaskFileName(const std::string& task_id) {
  std::string out = task_id;
  for (char& c : out) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  }
  if (out.empty() || out[0] == '.') out = "_" + out;
  return out;
}

}  // namespace gridemu::agent
