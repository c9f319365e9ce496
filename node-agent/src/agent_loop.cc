// One agent's event loop. See agent_loop.h.
#include "gridemu/node-agent/agent_loop.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <zmq.hpp>

namespace gridemu::agent {

class AgentLoop::SocketWire final : public Wire {
 public:
  explicit SocketWire(zmq::socket_t* socket) : socket_(socket) {}
  void Send(std::string_view bytes) override {
    try {
      auto r = socket_->send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::dontwait);
      if (!r) spdlog::warn("controller queue full: a message was dropped");
    } catch (const zmq::error_t& e) {
      spdlog::warn("send failed: {}", e.what());
    }
  }

 private:
  zmq::socket_t* socket_;
};

Result<std::unique_ptr<AgentLoop>> AgentLoop::Create(const AgentLoopOptions& options) {
  if (options.routing_id.empty()) return InvalidArgumentError("agent loop: empty routing id");
  std::unique_ptr<AgentLoop> loop(new AgentLoop());
  loop->options_ = options;
  loop->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  loop->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (loop->stop_fd_ < 0 || loop->wake_fd_ < 0) return InternalError("eventfd failed");
  try {
    zmq::context_t* ctx = options.context;
    if (ctx == nullptr) {
      loop->own_context_ = std::make_unique<zmq::context_t>(1);
      ctx = loop->own_context_.get();
    }
    loop->socket_ = std::make_unique<zmq::socket_t>(*ctx, zmq::socket_type::dealer);
    loop->socket_->set(zmq::sockopt::routing_id, options.routing_id);
    loop->socket_->set(zmq::sockopt::linger, options.linger_ms);
    loop->socket_->set(zmq::sockopt::sndhwm, options.send_hwm);
    loop->socket_->set(zmq::sockopt::rcvhwm, options.receive_hwm);
    if (options.reconnect_ivl_ms > 0) {
      loop->socket_->set(zmq::sockopt::reconnect_ivl, options.reconnect_ivl_ms);
    }
  } catch (const zmq::error_t& e) {
    return InternalError(std::string("ZeroMQ socket: ") + e.what());
  }
  loop->wire_ = std::make_unique<SocketWire>(loop->socket_.get());
  return loop;
}

AgentLoop::~AgentLoop() {
  wire_.reset();
  socket_.reset();
  own_context_.reset();
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Wire& AgentLoop::wire() { return *wire_; }

void AgentLoop::Stop() {
  const uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
}

void AgentLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void AgentLoop::Call(const std::function<void()>& fn) {
  std::unique_lock<std::mutex> l(call_mu_);
  if (!running_.load()) {
    fn();
    return;
  }
  std::promise<void> done;
  std::future<void> f = done.get_future();
  Post([&] {
    fn();
    done.set_value();
  });
  f.wait();
}

void AgentLoop::RunPosted() {
  std::vector<std::function<void()>> now;
  {
    std::lock_guard<std::mutex> l(posted_mu_);
    now.swap(posted_);
  }
  for (auto& fn : now) fn();
}

Status AgentLoop::Run(AgentCore& core) {
  if (!connected_) {
    try {
      socket_->connect(options_.controller);
    } catch (const zmq::error_t& e) {
      return InvalidArgumentError("controller endpoint '" + options_.controller + "': " + e.what());
    }
    connected_ = true;
  }
  running_.store(true);
  struct Running {
    AgentLoop* loop;
    ~Running() {
      {
        std::lock_guard<std::mutex> l(loop->call_mu_);
        loop->running_.store(false);
      }
      loop->RunPosted();  // a Call() waiting meanwhile
    }
  } running{this};
  core.Start(AgentClock::now());
  std::vector<zmq_pollitem_t> items;
  while (true) {
    const AgentClock::time_point next = core.Tick(AgentClock::now());
    const std::vector<int> fds = core.backend_poll_fds();
    items.assign(3 + fds.size(), zmq_pollitem_t{});
    items[0].socket = socket_->handle();
    items[0].events = ZMQ_POLLIN;
    items[1].fd = wake_fd_;
    items[1].events = ZMQ_POLLIN;
    items[2].fd = stop_fd_;
    items[2].events = ZMQ_POLLIN;
    for (size_t i = 0; i < fds.size(); ++i) {
      items[3 + i].fd = fds[i];
      items[3 + i].events = ZMQ_POLLIN;
    }
    const auto now = AgentClock::now();
    auto wait = options_.max_wait;
    if (next < now + wait) {
      wait = std::max(std::chrono::milliseconds(0),
                      std::chrono::duration_cast<std::chrono::milliseconds>(next - now) +
                          std::chrono::milliseconds(next > now ? 1 : 0));
    }
    const int rc = zmq_poll(items.data(), static_cast<int>(items.size()),
                            static_cast<long>(wait.count()));
    if (rc < 0) {
      if (zmq_errno() == EINTR) continue;
      return InternalError(std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
    }
    if (items[2].revents & ZMQ_POLLIN) return Status::Ok();
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof v);
    }
    RunPosted();
    for (int i = 0; i < options_.batch; ++i) {
      zmq::message_t msg;
      zmq::recv_result_t r;
      try {
        r = socket_->recv(msg, zmq::recv_flags::dontwait);
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) break;
        if (e.num() == ETERM) return UnavailableError("the ZeroMQ context was terminated");
        return InternalError(std::string("receive: ") + e.what());
      }
      if (!r) break;
      if (muted_.load()) continue;
      core.OnMessage(std::string_view(static_cast<const char*>(msg.data()), msg.size()));
    }
  }
}

}  // namespace gridemu::agent
