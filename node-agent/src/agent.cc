// The agent daemon: the real kernel wired under an AgentCore. See agent.h.
#include "gridemu/node-agent/agent.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "gridemu/netshape/shaper.h"
#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/agent_loop.h"
#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/pnode_backend.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/shard_applier.h"

namespace gridemu::agent {

struct Agent::Impl {
  AgentOptions opt;
  std::string host_id;
  std::unique_ptr<VnodeRuntime> runtime;
  std::unique_ptr<netshape::Shaper> shaper;
  std::unique_ptr<ShardRecords> records;
  std::unique_ptr<ShardApplier> applier;
  std::unique_ptr<PnodeBackend> backend;
  std::unique_ptr<AgentLoop> loop;
  std::unique_ptr<AgentCore> core;

  ~Impl() {
    // The worker first (it uses the applier), then the parts in reverse order.
    if (backend) backend->Stop();
    core.reset();
    loop.reset();
    backend.reset();
    applier.reset();
    records.reset();
    shaper.reset();
    runtime.reset();
  }
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() = default;

const std::string& Agent::host_id() const { return impl_->host_id; }

void Agent::Stop() { impl_->loop->Stop(); }

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  if (options.prefix.empty() || options.prefix.find_first_of("/ \t:") != std::string::npos) {
    return InvalidArgumentError("prefix '" + options.prefix +
                                "': expected a name without '/', ':' or spaces");
  }
  impl->host_id = options.host_id;
  if (impl->host_id.empty()) {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return InternalError("gethostname failed");
    impl->host_id = buf;
  }
  if (options.heartbeat.count() <= 0) return InvalidArgumentError("heartbeat: must be positive");
  if (in_addr a{}; !options.address.empty() &&
                   ::inet_pton(AF_INET, options.address.c_str(), &a) != 1) {
    return InvalidArgumentError("address '" + options.address +
                                "': expected this pnode's underlay IPv4 address, e.g. 192.0.2.7");
  }
  if (options.underlay_dev.size() > 15 ||
      options.underlay_dev.find_first_of("/: \t") != std::string::npos) {
    return InvalidArgumentError("underlay device '" + options.underlay_dev +
                                "': expected an interface name of at most 15 characters");
  }

  // Runtime.
  RuntimeRegistry registry;
  RegisterBuiltinRuntimes(registry);
  PnodeBackendOptions bo;
  bo.runtime_names = registry.Names();
  bo.max_vnodes = options.max_vnodes;
  RuntimeOptions ro;
  ro.prefix = options.prefix;
  ro.state_root = options.runtime_state_root;
  ro.netns_dir = options.netns_dir;
  ro.init_path = options.init_path;
  ro.cgroup_version = options.cgroup_version;
  GRIDEMU_ASSIGN_OR_RETURN(impl->runtime, registry.Make("netns", ro));
  if (auto* nr = dynamic_cast<NetnsRuntime*>(impl->runtime.get())) {
    bo.kernel_features.push_back(
        nr->cgroup_layout().version == CgroupVersion::kV1 ? "cgroup_v1" : "cgroup_v2");
  }

  // Shaping.
  GRIDEMU_ASSIGN_OR_RETURN(netshape::BackendChoice choice,
                           netshape::ParseBackendChoice(options.shaping_backend));
  if (options.capabilities) {
    bo.capabilities = *options.capabilities;
  } else {
    Result<netshape::Capabilities> c = netshape::ProbeCapabilities();
    if (c.ok()) {
      bo.capabilities = *c;
    } else {
      spdlog::warn("shaping probe failed: {}", c.status().ToString());
    }
  }
  netshape::ShaperOptions so;
  so.backend = choice;
  so.capabilities = bo.capabilities;
  Result<std::unique_ptr<netshape::Shaper>> shaper = netshape::Shaper::Create(so);
  if (shaper.ok()) {
    impl->shaper = std::move(*shaper);
    bo.active_shaping_backend = std::string(netshape::BackendName(impl->shaper->backend()));
    spdlog::info("shaping backend: {} ({})", bo.active_shaping_backend,
                 bo.capabilities.ToString());
  } else {
    spdlog::warn("no link shaping: {}", shaper.status().ToString());
  }

  const std::string records_dir =
      options.state_dir.empty() ? "/run/" + options.prefix + "-agent" : options.state_dir;
  impl->records = NewFileShardRecords(records_dir);
  ShardApplierOptions ao;
  ao.prefix = options.prefix;
  ao.default_output_dir = records_dir + "/out";
  // Cross-pnode links: VXLAN between this address and the peers', in the
  // agent's own (the host's) namespace.
  ao.local_address = options.address;
  ao.underlay_dev = options.underlay_dev;
  impl->applier = std::make_unique<ShardApplier>(
      KernelApplierDeps(impl->runtime.get(), impl->shaper.get(), impl->records.get()), ao);
  impl->backend =
      std::make_unique<PnodeBackend>(impl->runtime.get(), impl->applier.get(), std::move(bo));

  // Protocol.
  AgentLoopOptions lo;
  lo.controller = options.controller;
  lo.routing_id = impl->host_id;
  lo.context = options.context;
  GRIDEMU_ASSIGN_OR_RETURN(impl->loop, AgentLoop::Create(lo));
  CoreOptions co;
  co.host_id = impl->host_id;
  co.version = options.version;
  co.address = options.address;
  co.heartbeat = options.heartbeat;
  co.hello_retry = options.hello_retry;
  impl->core = std::make_unique<AgentCore>(co, impl->backend.get(), &impl->loop->wire());
  spdlog::info("agent {} for controller {}", impl->host_id, options.controller);
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Status Agent::Run() {
  Impl& m = *impl_;
  Status st = m.loop->Run(*m.core);
  m.backend->Stop();
  if (m.opt.teardown_on_exit) {
    for (const auto& [exp, gen] : m.applier->Experiments()) {
      TeardownReport rep = m.applier->Teardown(exp);
      spdlog::info("experiment {}: torn down on exit ({} vnodes)", exp, rep.vnodes_removed);
    }
  }
  spdlog::info("agent {} stopped", m.host_id);
  return st;
}

}  // namespace gridemu::agent
