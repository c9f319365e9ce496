// Wire encoding of DeployShard messages whose /etc/hosts part is shared
// (DESIGN.md §7, §11): every shard of an experiment carries all its hosts
// entries (100,000 of them at scale, ~2 MB), so they are encoded ONCE and the
// bytes are spliced into each shard's message instead of building 1,000
// copies as protobuf objects.
//
// Protobuf wire format facts this relies on (both are guaranteed by the
// encoding spec, https://protobuf.dev/programming-guides/encoding/):
//  - a repeated field is a sequence of tagged occurrences, and appending
//    encoded occurrences to a message's bytes appends elements;
//  - an embedded message field that occurs twice is MERGED by parsers (for a
//    oneof member too: the same member occurring again merges into it).
// So the agent parses exactly the DeployShard the naive way would send; only
// the order of fields on the wire differs. Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gridemu/topology/addressing.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller {

/// The wire bytes of DeployShard field 8 (`hosts`) holding `entries`, in
/// order: one tagged HostEntry occurrence per entry (name, then addresses as
/// dotted quads). Size: ~(name + 13 bytes per address + 4) per entry.
std::string EncodeHostsField(const std::vector<topology::HostsEntry>& entries);

/// The same for entries already in protobuf form.
std::string EncodeHostsField(const google::protobuf::RepeatedPtrField<v1::HostEntry>& entries);

/// The bytes of `env` (an Envelope whose body is a DeployShard, normally with
/// no hosts) with `hosts_field` (from EncodeHostsField) appended inside the
/// deploy_shard field: its length prefix covers them. Parses to `env` with the
/// hosts appended to deploy_shard.hosts. For a raw ZeroMQ send.
/// Precondition: env.has_deploy_shard() (else the bytes of `env` unchanged).
std::string EncodeDeployEnvelope(const v1::Envelope& env, std::string_view hosts_field);

/// Makes `env` (body: a DeployShard) carry `hosts_field` without parsing it:
/// the bytes become one unknown field of the Envelope, a second occurrence
/// of field 14 (deploy_shard) holding only the hosts, which parsers merge
/// into deploy_shard. The envelope can then go through any sender that takes
/// a v1::Envelope; SerializeToString() yields EncodeDeployEnvelope()'s message
/// (with the hosts in a second field-14 record). Costs one copy of
/// `hosts_field`. Precondition: env->has_deploy_shard() (else nothing done).
void AttachHostsField(v1::Envelope* env, std::string_view hosts_field);

}  // namespace gridemu::controller
