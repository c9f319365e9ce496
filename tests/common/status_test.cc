#include "gridemu/common/status.h"

#include <gtest/gtest.h>

#include "gridemu/common/diagnostics.h"

namespace gridemu {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgumentError("odd: " + std::to_string(x));
  return x / 2;
}

Status UseHalf(int x, int* out) {
  GRIDEMU_ASSIGN_OR_RETURN(int h, Half(x));
  *out = h;
  return Status::Ok();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFoundError("vnode 'x'");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "not found: vnode 'x'");
  EXPECT_EQ(s.WithContext("deploy").message(), "deploy: vnode 'x'");
}

TEST(Result, ValueOrError) {
  int out = 0;
  EXPECT_TRUE(UseHalf(4, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = UseHalf(3, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd: 3");
  EXPECT_EQ(out, 2);
}

TEST(Diagnostics, FormatsPositions) {
  Diagnostics d;
  EXPECT_TRUE(d.ToStatus().ok());
  d.Add({"exp.yaml", 3, 7}, "unknown key 'foo'");
  d.Add({"exp.yaml", 0, 0}, "no duration");
  EXPECT_EQ(d.ToString(), "exp.yaml:3:7: unknown key 'foo'\nexp.yaml: no duration");
  EXPECT_EQ(d.ToStatus().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gridemu
