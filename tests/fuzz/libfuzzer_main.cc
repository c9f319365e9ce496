// libFuzzer entry (clang -fsanitize=fuzzer builds, GRIDEMU_FUZZ=ON).
// GRIDEMU_FUZZ_TARGET selects the parser at compile time.
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  GRIDEMU_FUZZ_TARGET(data, size);
  return 0;
}
