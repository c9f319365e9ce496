// The controller's event loop, agent protocol and service. See controller.h.

#include "gridemu/controller/controller.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <zmq.hpp>

#include "gridemu/common/clock.h"
#include "gridemu/common/units.h"
#include "gridemu/controller/registry.h"
#include "gridemu/experiments/parse.h"
#include "orch_runner.h"

#ifndef GRIDEMU_VERSION
#define GRIDEMU_VERSION "0.1.0"
#endif

namespace gridemu::controller {

using orch::Clock;
using orch::Runner;
using std::chrono::milliseconds;

std::string_view GridemuVersion() { return GRIDEMU_VERSION; }

namespace {

std::string BodyName(v1::Envelope::BodyCase c) {
  const auto* field = v1::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(c));
  return field != nullptr ? field->name() : "empty";
}

std::string LogTime() {
  const auto now = std::chrono::system_clock::now();
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03d", static_cast<int>((ns / 1000000) % 1000));
  return std::string(buf, n) + ms;
}

}  // namespace

// ---------------------------------------------------------------- Impl

class OrchService;

struct Controller::Impl : public orch::RunnerEnv {
  ControllerOptions opt;
  std::unique_ptr<Store> store_;
  std::unique_ptr<zmq::context_t> own_context;
  zmq::context_t* context = nullptr;
  std::unique_ptr<zmq::socket_t> router;
  std::string endpoint;
  int wake_fd = -1;
  std::thread thread;
  std::atomic<bool> stop_requested{false};
  bool stopped = false;
  std::mutex stop_mu;

  std::mutex queue_mu;
  std::deque<std::function<void()>> queue;
  bool loop_exited = false;  // guarded by queue_mu

  AgentRegistry registry_;
  std::shared_ptr<const Placer> placer_;
  std::map<std::string, std::unique_ptr<Runner>> runners;  // not done
  std::map<std::string, RunProgress> finished;             // done since start
  std::map<std::string, Clock::time_point> unknown_since;  // unregistered talkers
  std::map<std::string, std::vector<v1::Envelope>> early;  // their reports, until registered
  std::map<std::string, std::map<std::string, uint64_t>> orphans;  // host -> id -> generation
  uint64_t next_request_id = 0;
  std::unique_ptr<OrchService> service;

  explicit Impl(ControllerOptions o)
      : opt(std::move(o)),
        registry_(nullptr, RegistryOptions{opt.heartbeat_interval, opt.heartbeat_timeout,
                                           std::chrono::milliseconds(5000)}) {}
  ~Impl() override;

  // RunnerEnv
  Store& store() override { return *store_; }
  const AgentRegistry& registry() const override { return registry_; }
  const ControllerOptions& options() const override { return opt; }
  const Placer& placer() const override { return *placer_; }
  Result<uint64_t> Send(const std::string& host, v1::Envelope env) override;
  void Log(const std::string& line) override {
    if (opt.log) {
      opt.log(line);
    } else {
      std::cerr << LogTime() << " gridemu-controller: " << line << "\n";
    }
  }
  void Orphan(const std::string& host, const std::string& experiment_id,
              uint64_t generation) override {
    orphans[host][experiment_id] = generation;
  }
  // Teardown of what `host` may still hold of experiments it could not tear
  // down before (see Orphan()).
  void SendOrphanTeardowns(const std::string& host) {
    auto it = orphans.find(host);
    if (it == orphans.end()) return;
    for (const auto& [id, generation] : it->second) {
      v1::Envelope env;
      env.set_experiment_id(id);
      env.set_generation(generation);
      env.mutable_teardown()->set_experiment_id(id);
      if (Send(host, std::move(env)).ok()) {
        Log("experiment " + id + ": teardown sent to " + host + ", which is back");
      }
    }
    orphans.erase(it);
  }
  uint32_t VnodesInUse(const std::string& host, const std::string& except_id) override {
    uint32_t n = 0;
    for (const auto& [id, r] : runners) {
      if (id != except_id) n += r->VnodesOn(host);
    }
    return n;
  }

  // Loop.
  void Loop();
  void Post(std::function<void()> fn);
  template <typename T>
  Result<T> Call(std::function<Result<T>()> fn, milliseconds timeout = std::chrono::seconds(30));
  void Wake();
  void HandleMessage(const std::string& identity, const zmq::message_t& payload,
                     Clock::time_point now);
  void HandleHello(const std::string& identity, const v1::Envelope& env, Clock::time_point now);
  void SendRaw(const std::string& identity, const v1::Envelope& env);
  void ReplyError(const std::string& identity, const v1::Envelope& about, const Status& s);
  void AddRunner(std::unique_ptr<Runner> r, Clock::time_point now);
  bool MaybeRegisterImplicitly(const std::string& identity, Clock::time_point now);
  void Dispatch(const std::string& identity, const v1::Envelope& env, Clock::time_point now);
  void ReplayEarly(const std::string& identity, Clock::time_point now);
  void Reap();
  void RecoverAll();
};

Controller::Impl::~Impl() {
  if (wake_fd >= 0) ::close(wake_fd);
}

void Controller::Impl::Wake() {
  const uint64_t one = 1;
  ssize_t n = ::write(wake_fd, &one, sizeof(one));
  (void)n;
}

void Controller::Impl::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(queue_mu);
    queue.push_back(std::move(fn));
  }
  Wake();
}

template <typename T>
Result<T> Controller::Impl::Call(std::function<Result<T>()> fn, milliseconds timeout) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  std::future<Result<T>> future = promise->get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mu);
    if (loop_exited) return UnavailableError("the controller is stopped");
    queue.push_back([promise, fn = std::move(fn)] { promise->set_value(fn()); });
  }
  Wake();
  if (future.wait_for(timeout) != std::future_status::ready) {
    return DeadlineExceededError("the controller did not answer within " + FormatTime(timeout));
  }
  return future.get();
}

void Controller::Impl::SendRaw(const std::string& identity, const v1::Envelope& env) {
  std::string bytes;
  env.SerializeToString(&bytes);
  try {
    if (!router->send(zmq::buffer(identity),
                      zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return;
    }
    (void)router->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // EHOSTUNREACH: the peer is gone. Callers that care use Send().
  }
}

Result<uint64_t> Controller::Impl::Send(const std::string& host, v1::Envelope env) {
  const AgentInfo* a = registry_.Find(host);
  if (a == nullptr || !a->alive) return UnavailableError("agent " + host + " is not connected");
  if (env.request_id() == 0) env.set_request_id(++next_request_id);
  std::string bytes;
  env.SerializeToString(&bytes);
  try {
    if (!router->send(zmq::buffer(a->identity),
                      zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
        !router->send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
      return UnavailableError("agent " + host + " does not take messages (send queue full)");
    }
  } catch (const zmq::error_t& e) {
    return UnavailableError("agent " + host + " is not connected (" + e.what() + ")");
  }
  return env.request_id();
}

void Controller::Impl::ReplyError(const std::string& identity, const v1::Envelope& about,
                                  const Status& s) {
  v1::Envelope env;
  env.set_request_id(about.request_id());
  env.set_experiment_id(about.experiment_id());
  env.set_generation(about.generation());
  env.mutable_error()->set_code(std::string(StatusCodeName(s.code())));
  env.mutable_error()->set_message(s.message());
  SendRaw(identity, env);
}

void Controller::Impl::HandleHello(const std::string& identity, const v1::Envelope& env,
                                   Clock::time_point now) {
  const v1::AgentHello& hello = env.agent_hello();
  unknown_since.erase(identity);
  Status s = registry_.OnHello(identity, hello, now);
  if (!s.ok() && s.code() == StatusCode::kInvalidArgument) {
    Log("refused AgentHello from '" + identity + "': " + s.message());
    ReplyError(identity, env, s);
    return;
  }
  if (!s.ok()) Log("store: cannot record host " + hello.host_id() + ": " + s.ToString());
  v1::Envelope out;
  out.set_request_id(env.request_id());
  v1::Welcome* w = out.mutable_welcome();
  w->set_heartbeat_interval_ms(static_cast<uint32_t>(opt.heartbeat_interval.count()));
  w->set_controller_version(opt.version);
  for (const auto& [id, r] : runners) {
    if (auto k = r->KeepOn(hello.host_id(), hello)) *w->add_keep() = *k;
  }
  SendRaw(identity, out);
  Log("agent " + hello.host_id() + " registered (" + hello.capabilities().kernel_release() +
      ", shaping " +
      (hello.capabilities().active_shaping_backend().empty()
           ? std::string("none")
           : hello.capabilities().active_shaping_backend()) +
      ", " + std::to_string(hello.held_size()) + " experiment(s) held, " +
      std::to_string(w->keep_size()) + " kept)");
  for (auto& [id, r] : runners) r->OnAgentHello(hello.host_id(), hello, now);
  SendOrphanTeardowns(hello.host_id());
  ReplayEarly(identity, now);
}

void Controller::Impl::HandleMessage(const std::string& identity, const zmq::message_t& payload,
                                     Clock::time_point now) {
  v1::Envelope env;
  if (!env.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    ReplyError(identity, env,
               InvalidArgumentError("malformed message: not a gridemu.v1.Envelope (" +
                                    std::to_string(payload.size()) + " bytes)"));
    return;
  }
  switch (env.body_case()) {
    case v1::Envelope::BODY_NOT_SET:
      ReplyError(identity, env, InvalidArgumentError("envelope without a body"));
      return;
    case v1::Envelope::kAgentHello:
      HandleHello(identity, env, now);
      return;
    case v1::Envelope::kWelcome:
    case v1::Envelope::kDeployShard:
    case v1::Envelope::kExec:
    case v1::Envelope::kSignal:
    case v1::Envelope::kApplyEvent:
    case v1::Envelope::kTeardown:
      ReplyError(identity, env,
                 InvalidArgumentError("the controller does not accept " +
                                      BodyName(env.body_case()) + " messages"));
      return;
    default:
      break;
  }
  if (!registry_.Touch(identity, now)) {
    if (!MaybeRegisterImplicitly(identity, now)) {
      if (env.body_case() != v1::Envelope::kError) {
        ReplyError(identity, env,
                   FailedPreconditionError("unknown agent '" + identity +
                                           "': send AgentHello to register first"));
      }
      // Reports sent while the controller was away (a DEALER queues them
      // across a reconnect) are kept and handled once the agent registers.
      if (env.body_case() != v1::Envelope::kHeartbeat && env.body_case() != v1::Envelope::kError) {
        auto& q = early[identity];
        if (q.size() < 100000) q.push_back(std::move(env));
      }
      return;
    }
  }
  Dispatch(identity, env, now);
}

void Controller::Impl::ReplayEarly(const std::string& identity, Clock::time_point now) {
  auto it = early.find(identity);
  if (it == early.end()) return;
  std::vector<v1::Envelope> msgs = std::move(it->second);
  early.erase(it);
  for (const auto& env : msgs) Dispatch(identity, env, now);
}

// A message from a registered agent.
void Controller::Impl::Dispatch(const std::string& identity, const v1::Envelope& env,
                                Clock::time_point now) {
  const std::string& host = identity;  // identity == host id (checked at hello)
  if (env.body_case() == v1::Envelope::kHeartbeat) {
    Status s = registry_.OnHeartbeat(identity, env.heartbeat(), now);
    if (!s.ok()) ReplyError(identity, env, s);
    return;
  }
  if (env.experiment_id().empty()) {
    if (env.body_case() == v1::Envelope::kError) {
      Log("error from agent " + host + ": " + env.error().code() + ": " + env.error().message());
    } else {
      ReplyError(identity, env,
                 InvalidArgumentError(BodyName(env.body_case()) + " without an experiment_id"));
    }
    return;
  }
  auto it = runners.find(env.experiment_id());
  if (it == runners.end()) {
    // Late answers for a finished experiment are expected (e.g. a TaskEvent
    // after the teardown began); anything else is an error.
    if (finished.count(env.experiment_id()) != 0 || env.body_case() == v1::Envelope::kTornDown ||
        env.body_case() == v1::Envelope::kError) {
      return;
    }
    ReplyError(identity, env,
               NotFoundError("unknown or finished experiment '" + env.experiment_id() + "'"));
    return;
  }
  Status s = it->second->OnMessage(host, env, now);
  if (!s.ok() && env.body_case() != v1::Envelope::kError) ReplyError(identity, env, s);
}

// An agent that keeps talking without AgentHello (e.g. it was welcomed by
// the controller before a restart and does not register again when told
// to) is registered from its stored host record after a grace period, with
// nothing known to be held: recovered experiments on it are then failed and
// torn down instead of waiting for a hello that never comes (no residue).
bool Controller::Impl::MaybeRegisterImplicitly(const std::string& identity, Clock::time_point now) {
  auto [it, first] = unknown_since.emplace(identity, now);
  const auto grace = std::max<milliseconds>(3 * opt.heartbeat_interval, milliseconds(2000));
  if (first || now - it->second < grace) return false;
  auto host = store_->GetHost(identity);
  if (!host.ok()) return false;
  unknown_since.erase(it);
  v1::AgentHello hello;
  hello.set_host_id(identity);
  hello.set_address(host->address);
  hello.mutable_capacity()->set_cores(host->cores);
  hello.mutable_capacity()->set_memory_bytes(host->memory_bytes);
  hello.mutable_capacity()->set_max_vnodes(host->max_vnodes);
  if (!registry_.OnHello(identity, hello, now).ok()) return false;
  Log("agent " + identity +
      " sends messages without AgentHello: registered from its stored "
      "record; what it holds is unknown");
  for (auto& [id, r] : runners) r->OnAgentHello(identity, hello, now, /*implicit=*/true);
  SendOrphanTeardowns(identity);
  ReplayEarly(identity, now);
  return true;
}

void Controller::Impl::AddRunner(std::unique_ptr<Runner> r, Clock::time_point now) {
  const std::string id = r->id();
  if (r->done()) {
    finished[id] = r->Progress(now);
    return;
  }
  runners[id] = std::move(r);
}

void Controller::Impl::Reap() {
  const auto now = Clock::now();
  for (auto it = runners.begin(); it != runners.end();) {
    it->second->Flush();
    if (it->second->done()) {
      finished[it->first] = it->second->Progress(now);
      it = runners.erase(it);
    } else {
      ++it;
    }
  }
}

void Controller::Impl::RecoverAll() {
  auto rx = store_->Recover();
  if (!rx.ok()) {
    Log("cannot recover experiments: " + rx.status().ToString());
    return;
  }
  const auto now = Clock::now();
  for (auto& x : *rx) {
    const std::string id = x.record.id;
    const std::string state(ExperimentStateName(x.record.state));
    auto r = Runner::Recover(*this, std::move(x), now);
    if (!r.ok()) {
      Log("experiment " + id + ": cannot recover it: " + r.status().message());
      Status s = store_->Transition(id, ExperimentState::kFailed,
                                    "controller restarted: " + r.status().message());
      if (!s.ok()) Log("store: " + s.ToString());
      continue;
    }
    Log("experiment " + id + ": recovered in state " + state);
    AddRunner(std::move(r).value(), now);
  }
}

void Controller::Impl::Loop() {
  while (!stop_requested.load()) {
    auto now = Clock::now();
    Clock::time_point deadline = now + milliseconds(100);
    for (const auto& [id, r] : runners) {
      if (auto d = r->NextDeadline()) deadline = std::min(deadline, *d);
    }
    if (auto e = registry_.NextExpiry()) deadline = std::min(deadline, *e);
    long timeout_ms = 0;
    if (deadline > now) {
      timeout_ms = static_cast<long>(std::chrono::ceil<milliseconds>(deadline - now).count());
    }
    zmq::pollitem_t items[2] = {};
    items[0].socket = router->handle();
    items[0].events = ZMQ_POLLIN;
    items[1].fd = wake_fd;
    items[1].events = ZMQ_POLLIN;
    try {
      zmq::poll(items, 2, milliseconds(timeout_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      if (e.num() != EINTR) Log(std::string("poll failed: ") + e.what());
    }
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t n = 0;
      ssize_t r = ::read(wake_fd, &n, sizeof(n));
      (void)r;
    }
    // Posted work (service calls).
    std::deque<std::function<void()>> work;
    {
      std::lock_guard<std::mutex> lock(queue_mu);
      work.swap(queue);
    }
    for (auto& fn : work) fn();
    // Agent messages: at most a batch per turn, so timers stay on time.
    for (int i = 0; i < 4096; ++i) {
      zmq::message_t identity, payload;
      try {
        if (!router->recv(identity, zmq::recv_flags::dontwait)) break;
        if (!identity.more()) continue;
        (void)router->recv(payload, zmq::recv_flags::dontwait);
        if (payload.more()) {
          // Extra frames: drain them and refuse the message.
          zmq::message_t extra;
          while (payload.more() && router->recv(extra, zmq::recv_flags::dontwait)) {
            if (!extra.more()) break;
          }
          v1::Envelope none;
          ReplyError(identity.to_string(), none,
                     InvalidArgumentError("malformed message: one Envelope frame expected"));
          continue;
        }
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return;
        Log(std::string("receive failed: ") + e.what());
        break;
      }
      HandleMessage(identity.to_string(), payload, Clock::now());
    }
    now = Clock::now();
    for (const std::string& host : registry_.ExpireSilent(now)) {
      const AgentInfo* a = registry_.Find(host);
      const std::string reason = a != nullptr ? a->lost_reason : "heartbeat timeout";
      Log("agent " + host + " lost: " + reason);
      for (auto& [id, r] : runners) r->OnAgentLost(host, reason, now);
    }
    for (auto& [id, r] : runners) r->Tick(now);
    Reap();
  }
}

// ---------------------------------------------------------------- service

class OrchService : public StoreService {
 public:
  OrchService(Controller::Impl& impl, StoreServiceOptions options)
      : StoreService(*impl.store_, std::move(options)), impl_(impl) {}

  Result<SubmitResponse> Submit(const SubmitRequest& request) override {
    if (!request.slice.empty()) {
      GRIDEMU_RETURN_IF_ERROR(store().GetSlice(request.slice).status());
    }
    auto parsed =
        experiments::ParseExperiment(request.yaml, request.filename, impl_.opt.import_base_dir);
    if (!parsed.ok()) return parsed.status();
    auto exp = std::make_shared<experiments::Experiment>(std::move(parsed).value());
    if (!request.allow_host_commands && (!exp->prepare.empty() || !exp->analyze.empty())) {
      return InvalidArgumentError(
          request.filename + ": prepare/analyze: these run commands on the controller's host, " +
          "which a shared controller does not do; run the file with `gridemu run`, or remove " +
          "them (nothing was stored)");
    }
    if (!request.shared_dir.empty()) exp->shared_dir = request.shared_dir;
    std::string slice = exp->slice;
    if (!request.slice.empty()) {
      if (exp->slice != request.slice && exp->slice != "default") {
        return InvalidArgumentError(request.filename + ": slice: the file is for slice '" +
                                    exp->slice + "' but it was submitted to slice '" +
                                    request.slice + "'");
      }
      slice = request.slice;
    }
    // Can the live agents take it? Placed here (on this thread: METIS may
    // take seconds on large topologies) so that an infeasible experiment is
    // refused before anything is stored or deployed; the runner reuses this
    // placement when the agents have not changed meanwhile.
    // One submission at a time from here until its runner is registered
    // (and reserves what it was placed on: Runner::VnodesOn), so that two
    // submissions cannot both count the same free room.
    std::lock_guard<std::mutex> serial(submit_mu_);
    using Candidates = std::vector<PnodeCandidate>;
    auto candidates = impl_.Call<Candidates>(
        [this]() -> Result<Candidates> { return orch::LiveCandidates(impl_, ""); });
    if (!candidates.ok()) return candidates.status();
    if (candidates->empty()) {
      return UnavailableError("no agent is registered with the controller at " + impl_.endpoint +
                              ": start gridemu-agent --controller " + impl_.endpoint +
                              " on a pnode (nothing was stored)");
    }
    auto placement = impl_.placer_->Place(*exp, *candidates);
    if (!placement.ok()) {
      const Status& ps = placement.status();
      // kInvalidArgument would read as a file error (HTTP 422): the file is
      // valid, the live agents cannot take it.
      const StatusCode code =
          ps.code() == StatusCode::kInvalidArgument ? StatusCode::kFailedPrecondition : ps.code();
      return Status(code, "cannot place experiment '" + exp->name + "' on the " +
                              std::to_string(candidates->size()) +
                              " live agent(s): " + ps.message() + " (nothing was stored)");
    }
    // Cross-pnode links need both pnodes' underlay addresses.
    using Addresses = std::vector<std::string>;
    auto addresses = impl_.Call<Addresses>([this, &placement]() -> Result<Addresses> {
      Addresses out;
      for (const std::string& p : placement->pnodes) {
        const AgentInfo* a = impl_.registry_.Find(p);
        out.push_back(a != nullptr ? a->hello.address() : "");
      }
      return out;
    });
    if (!addresses.ok()) return addresses.status();
    if (Status st = orch::CheckTunnelAddresses(exp->topology, *placement, *addresses); !st.ok()) {
      return Status(st.code(), "cannot place experiment '" + exp->name + "': " + st.message() +
                                   " (nothing was stored)");
    }
    // Every shaping parameter must be honoured where it is placed (a file error: 422).
    using Shaping = std::vector<orch::PnodeShaping>;
    auto shaping = impl_.Call<Shaping>([this, &placement]() -> Result<Shaping> {
      Shaping out;
      for (const std::string& p : placement->pnodes) {
        orch::PnodeShaping s;
        s.host = p;
        if (const AgentInfo* a = impl_.registry_.Find(p)) {
          s.backend = a->hello.capabilities().active_shaping_backend();
          s.parameters.assign(a->hello.capabilities().shaping_parameters().begin(),
                              a->hello.capabilities().shaping_parameters().end());
        }
        out.push_back(std::move(s));
      }
      return out;
    });
    if (!shaping.ok()) return shaping.status();
    GRIDEMU_RETURN_IF_ERROR(orch::CheckShapingParameters(*exp, *placement, *shaping));
    CreateExperimentOptions options;
    options.slice = slice;
    options.reason = "submitted to slice " + slice;
    GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord rec,
                             store().CreateExperiment(*exp, request.yaml, options));
    const std::string id = rec.id;
    auto added =
        impl_.Call<bool>([this, rec = std::move(rec), exp, cands = std::move(candidates).value(),
                          placed = std::move(placement).value()]() mutable -> Result<bool> {
          const auto now = Clock::now();
          auto runner = std::make_unique<Runner>(impl_, std::move(rec), std::move(*exp), now);
          runner->SetPlacementHint(std::move(cands), std::move(placed));
          impl_.AddRunner(std::move(runner), now);
          impl_.Reap();
          return true;
        });
    if (!added.ok()) return added.status();
    return SubmitResponse{id, ExperimentState::kSubmitted};
  }

  Result<ExperimentState> Cancel(const std::string& slice, const std::string& id) override {
    GRIDEMU_RETURN_IF_ERROR(GetOwned(slice, id).status());
    return CancelById(id, "cancel requested");
  }

  Result<ExperimentState> CancelById(const std::string& id, const std::string& reason) {
    using Answer = std::optional<ExperimentState>;  // unset: not run by this controller
    auto r = impl_.Call<Answer>([this, id, reason]() -> Result<Answer> {
      auto it = impl_.runners.find(id);
      if (it == impl_.runners.end()) return Answer();
      auto st = it->second->Cancel(reason, Clock::now());
      impl_.Reap();
      if (!st.ok()) return st.status();
      return Answer(*st);
    });
    if (!r.ok()) return r.status();
    if (r->has_value()) return **r;
    GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord rec, store().GetExperiment(id));
    if (IsFinalState(rec.state)) {
      return FailedPreconditionError("experiment " + id + " is already " +
                                     std::string(ExperimentStateName(rec.state)));
    }
    // Not final and not run by this controller (should not happen): the store
    // alone decides.
    return StoreService::Cancel(rec.slice, id);
  }

 private:
  Controller::Impl& impl_;
  std::mutex submit_mu_;  // Submit(): one placement check + registration at a time
};

// ---------------------------------------------------------------- Controller

Controller::Controller(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Controller::~Controller() { Stop(); }

Result<std::unique_ptr<Controller>> Controller::Start(ControllerOptions options) {
  if (options.version.empty()) options.version = std::string(GridemuVersion());
  auto impl = std::make_unique<Impl>(std::move(options));
  Impl& m = *impl;
  m.placer_ = m.opt.placer ? m.opt.placer : std::make_shared<SinglePnodePlacer>();
  GRIDEMU_ASSIGN_OR_RETURN(m.store_, Store::Open(m.opt.db_path));
  m.registry_ = AgentRegistry(m.store_.get(),
                              RegistryOptions{m.opt.heartbeat_interval, m.opt.heartbeat_timeout,
                                              std::chrono::milliseconds(5000)});
  m.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (m.wake_fd < 0) return InternalError(std::string("eventfd: ") + std::strerror(errno));
  if (m.opt.context == nullptr) {
    m.own_context = std::make_unique<zmq::context_t>(1);
    m.context = m.own_context.get();
  } else {
    m.context = m.opt.context;
  }
  try {
    m.router = std::make_unique<zmq::socket_t>(*m.context, zmq::socket_type::router);
    m.router->set(zmq::sockopt::router_mandatory, 1);
    m.router->set(zmq::sockopt::router_handover, 1);
    m.router->set(zmq::sockopt::linger, 0);
    m.router->set(zmq::sockopt::sndhwm, 1000000);
    m.router->set(zmq::sockopt::rcvhwm, 1000000);
    m.router->set(zmq::sockopt::maxmsgsize, int64_t{256} << 20);
    m.router->bind(m.opt.agents_endpoint);
    m.endpoint = m.router->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return UnavailableError("cannot bind the agents' socket to " + m.opt.agents_endpoint + ": " +
                            e.what());
  }
  // Request ids must not repeat across restarts (agents remember answers by
  // (experiment, generation, request id)): start from the clock.
  m.next_request_id = static_cast<uint64_t>(UnixNanosNow() / 1000) << 8;
  StoreServiceOptions so;
  so.import_base_dir = m.opt.import_base_dir;
  m.service = std::make_unique<OrchService>(m, so);
  m.RecoverAll();
  m.thread = std::thread([&m] {
    m.Loop();
    std::deque<std::function<void()>> rest;
    {
      std::lock_guard<std::mutex> lock(m.queue_mu);
      m.loop_exited = true;
      rest.swap(m.queue);
    }
    for (auto& fn : rest) fn();  // answers Call()s still waiting
  });
  m.Log("listening for agents on " + m.endpoint);
  return std::unique_ptr<Controller>(new Controller(std::move(impl)));
}

void Controller::Stop() {
  if (!impl_) return;
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stop_requested = true;
  impl_->Wake();
  if (impl_->thread.joinable()) impl_->thread.join();
  for (auto& [id, r] : impl_->runners) r->Flush();
  impl_->router.reset();
  impl_->own_context.reset();
}

const std::string& Controller::endpoint() const { return impl_->endpoint; }

Store& Controller::store() { return *impl_->store_; }

ControllerService& Controller::service() { return *impl_->service; }

Result<ExperimentState> Controller::Cancel(const std::string& id, const std::string& reason) {
  return impl_->service->CancelById(id, reason.empty() ? "cancel requested" : reason);
}

Result<RunProgress> Controller::Progress(const std::string& id) {
  Impl& m = *impl_;
  return m.Call<RunProgress>([&m, id]() -> Result<RunProgress> {
    if (auto it = m.runners.find(id); it != m.runners.end()) {
      return it->second->Progress(Clock::now());
    }
    if (auto it = m.finished.find(id); it != m.finished.end()) return it->second;
    auto rec = m.store_->GetExperiment(id);
    if (!rec.ok()) return rec.status();
    RunProgress p;
    p.id = id;
    p.state = rec->state;
    p.phase = IsFinalState(rec->state) ? "done" : "not run by this controller";
    p.final = IsFinalState(rec->state);
    p.reason = rec->failure_reason;
    p.results_dir = rec->results_dir;
    p.duration = rec->duration;
    return p;
  });
}

std::vector<AgentStatus> Controller::Agents() {
  Impl& m = *impl_;
  auto r = m.Call<std::vector<AgentStatus>>([&m]() -> Result<std::vector<AgentStatus>> {
    std::vector<AgentStatus> out;
    for (const auto& [id, a] : m.registry_.agents()) {
      AgentStatus s;
      s.host_id = id;
      s.alive = a.alive;
      s.vnodes = a.vnodes;
      s.kernel_release = a.hello.capabilities().kernel_release();
      s.shaping_backend = a.hello.capabilities().active_shaping_backend();
      s.version = a.hello.version();
      s.lost_reason = a.lost_reason;
      out.push_back(std::move(s));
    }
    return out;
  });
  return r.ok() ? *r : std::vector<AgentStatus>{};
}

bool Controller::WaitForAgents(size_t n, milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (true) {
    size_t alive = 0;
    for (const auto& a : Agents()) alive += a.alive ? 1 : 0;
    if (alive >= n) return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

Result<ExperimentRecord> Controller::WaitFinal(const std::string& id, milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord rec, impl_->store_->GetExperiment(id));
    if (IsFinalState(rec.state)) return rec;
    if (Clock::now() >= end) {
      return DeadlineExceededError("experiment " + id + " is still " +
                                   std::string(ExperimentStateName(rec.state)) + " after " +
                                   FormatTime(timeout));
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

}  // namespace gridemu::controller
