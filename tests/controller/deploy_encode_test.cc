// deploy_encode.h: shared hosts bytes spliced into DeployShard envelopes parse
// back to exactly the DeployShard the naive way (hosts as protobuf objects)
// sends.
#include "../../controller/src/deploy_encode.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

namespace gridemu::controller {
namespace {

using google::protobuf::util::MessageDifferencer;

std::vector<topology::HostsEntry> Entries(size_t n) {
  std::vector<topology::HostsEntry> out;
  for (size_t i = 0; i < n; ++i) {
    topology::HostsEntry e;
    e.name = "h" + std::to_string(i);
    e.addresses.push_back(topology::Ipv4Address{0x0A000000u + static_cast<uint32_t>(i)});
    if (i % 3 == 0) e.addresses.push_back(topology::Ipv4Address{0x0B000000u + static_cast<uint32_t>(i)});
    out.push_back(std::move(e));
  }
  return out;
}

// A shard with every kind of field set (hosts excluded).
v1::Envelope ShardEnvelope() {
  v1::Envelope env;
  env.set_request_id(77);
  env.set_experiment_id("exp-1");
  env.set_generation(3);
  v1::DeployShard* d = env.mutable_deploy_shard();
  d->set_experiment_id("exp-1");
  d->set_generation(3);
  d->set_seed(42);
  for (int i = 0; i < 300; ++i) {
    v1::VnodeSpec* v = d->add_vnodes();
    v->set_name("h" + std::to_string(i));
    v->set_kind("host");
    v->set_runtime("netns");
    v->set_group_index(i);
  }
  v1::LinkSpec* l = d->add_links();
  l->set_name("h0--h1");
  l->mutable_a()->set_vnode("h0");
  l->mutable_b()->set_address("10.0.0.1/31");
  l->mutable_forward()->set_rate_bps(1000000);
  l->mutable_tunnel()->set_vni(5);
  d->add_routes()->set_destination("default");
  d->set_shared_dir("/srv/shared");
  d->set_output_dir("/srv/out");
  d->set_metrics_interval_ms(1000);
  d->set_shaping_backend("userspace");
  return env;
}

v1::Envelope Naive(v1::Envelope env, const std::vector<topology::HostsEntry>& entries) {
  for (const auto& e : entries) {
    v1::HostEntry* h = env.mutable_deploy_shard()->add_hosts();
    h->set_name(e.name);
    for (const auto& a : e.addresses) h->add_addresses(a.ToString());
  }
  return env;
}

TEST(DeployEncode, HostsFieldIsTheRepeatedField) {
  const auto entries = Entries(1000);
  const std::string field = EncodeHostsField(entries);
  // The field's bytes alone are a DeployShard with just these hosts.
  v1::DeployShard parsed;
  ASSERT_TRUE(parsed.ParseFromString(field));
  ASSERT_EQ(parsed.hosts_size(), 1000);
  EXPECT_EQ(parsed.hosts(0).name(), "h0");
  EXPECT_EQ(parsed.hosts(0).addresses_size(), 2);
  EXPECT_EQ(parsed.hosts(0).addresses(1), "11.0.0.0");
  EXPECT_EQ(parsed.hosts(999).addresses(0), "10.0.3.231");
  // Both overloads agree.
  EXPECT_EQ(EncodeHostsField(parsed.hosts()), field);
}

TEST(DeployEncode, SplicedEnvelopeParsesToTheNaiveShard) {
  const auto entries = Entries(2500);
  const v1::Envelope without = ShardEnvelope();
  const v1::Envelope naive = Naive(without, entries);
  const std::string field = EncodeHostsField(entries);

  const std::string spliced = EncodeDeployEnvelope(without, field);
  v1::Envelope got;
  ASSERT_TRUE(got.ParseFromString(spliced));
  EXPECT_TRUE(MessageDifferencer::Equals(got, naive)) << got.ShortDebugString().substr(0, 400);
  EXPECT_TRUE(got.GetReflection()->GetUnknownFields(got).empty());
  // Same size as the naive encoding: only the field order differs.
  EXPECT_EQ(spliced.size(), naive.SerializeAsString().size());
  // The hosts really are in the bytes (not equal by accident).
  v1::Envelope bare;
  ASSERT_TRUE(bare.ParseFromString(EncodeDeployEnvelope(without, "")));
  EXPECT_EQ(bare.deploy_shard().hosts_size(), 0);
  EXPECT_FALSE(MessageDifferencer::Equals(bare, naive));
}

TEST(DeployEncode, AttachedHostsSurviveSerializationAndMerge) {
  const auto entries = Entries(2500);
  v1::Envelope env = ShardEnvelope();
  const v1::Envelope naive = Naive(env, entries);
  AttachHostsField(&env, EncodeHostsField(entries));
  EXPECT_EQ(env.deploy_shard().hosts_size(), 0);  // not parsed on this side
  const std::string bytes = env.SerializeAsString();
  v1::Envelope got;
  ASSERT_TRUE(got.ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(got, naive));
  EXPECT_TRUE(got.GetReflection()->GetUnknownFields(got).empty()) << "field 14 was merged, not kept as unknown";
  ASSERT_EQ(got.deploy_shard().hosts_size(), 2500);
  EXPECT_EQ(got.deploy_shard().hosts(2499).name(), "h2499");
  // A request id set after attaching (the controller's Send) is kept.
  env.set_request_id(91);
  ASSERT_TRUE(got.ParseFromString(env.SerializeAsString()));
  EXPECT_EQ(got.request_id(), 91u);
  EXPECT_EQ(got.deploy_shard().hosts_size(), 2500);
}

TEST(DeployEncode, NoShardNoChange) {
  v1::Envelope env;
  env.set_request_id(5);
  env.mutable_teardown()->set_experiment_id("x");
  AttachHostsField(&env, EncodeHostsField(Entries(3)));
  EXPECT_TRUE(env.GetReflection()->GetUnknownFields(env).empty());
  EXPECT_EQ(EncodeDeployEnvelope(env, "abc"), env.SerializeAsString());
}

}  // namespace
}  // namespace gridemu::controller
