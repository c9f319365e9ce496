// Shared hosts entries spliced into DeployShard bytes. See deploy_encode.h.

#include "deploy_encode.h"

#include <google/protobuf/unknown_field_set.h>

namespace gridemu::controller {
namespace {

constexpr int kEnvelopeDeployShard = v1::Envelope::kDeployShardFieldNumber;  // 14
constexpr int kDeployShardHosts = v1::DeployShard::kHostsFieldNumber;        // 8
constexpr uint32_t kWireLengthDelimited = 2;

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutLengthDelimited(std::string* out, int field, std::string_view bytes) {
  PutVarint(out, (static_cast<uint64_t>(field) << 3) | kWireLengthDelimited);
  PutVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}

}  // namespace

std::string EncodeHostsField(const std::vector<topology::HostsEntry>& entries) {
  std::string out, one;
  v1::HostEntry h;  // reused: no allocation per entry once warm
  for (const topology::HostsEntry& e : entries) {
    h.Clear();
    h.set_name(e.name);
    for (const topology::Ipv4Address& a : e.addresses) h.add_addresses(a.ToString());
    one.clear();
    h.AppendToString(&one);
    PutLengthDelimited(&out, kDeployShardHosts, one);
  }
  return out;
}

std::string EncodeHostsField(const google::protobuf::RepeatedPtrField<v1::HostEntry>& entries) {
  std::string out, one;
  for (const v1::HostEntry& h : entries) {
    one.clear();
    h.AppendToString(&one);
    PutLengthDelimited(&out, kDeployShardHosts, one);
  }
  return out;
}

std::string EncodeDeployEnvelope(const v1::Envelope& env, std::string_view hosts_field) {
  if (!env.has_deploy_shard()) return env.SerializeAsString();
  // The envelope's other fields, then field 14 = shard bytes + hosts bytes.
  v1::Envelope head;
  head.set_request_id(env.request_id());
  head.set_experiment_id(env.experiment_id());
  head.set_generation(env.generation());
  head.GetReflection()->MutableUnknownFields(&head)->MergeFrom(
      env.GetReflection()->GetUnknownFields(env));
  std::string out = head.SerializeAsString();
  const std::string shard = env.deploy_shard().SerializeAsString();
  out.reserve(out.size() + 20 + shard.size() + hosts_field.size());
  PutVarint(&out, (static_cast<uint64_t>(kEnvelopeDeployShard) << 3) | kWireLengthDelimited);
  PutVarint(&out, shard.size() + hosts_field.size());
  out += shard;
  out.append(hosts_field.data(), hosts_field.size());
  return out;
}

void AttachHostsField(v1::Envelope* env, std::string_view hosts_field) {
  if (!env->has_deploy_shard() || hosts_field.empty()) return;
  env->GetReflection()
      ->MutableUnknownFields(env)
      ->AddLengthDelimited(kEnvelopeDeployShard)
      ->assign(hosts_field.data(), hosts_field.size());
}

}  // namespace gridemu::controller
