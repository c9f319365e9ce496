// Private rtnetlink plumbing shared by netlink_ops.cc, capabilities.cc and shaper.cc.
#pragma once

#include <array>
#include <optional>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "gridemu/common/status.h"
#include "gridemu/netshape/netlink_ops.h"

struct nl_msg;
struct nl_sock;
struct nlmsghdr;

namespace gridemu::netshape {

/// Owns an nl_msg.
class NlMsgHandle {
 public:
  explicit NlMsgHandle(nl_msg* m) : m_(m) {}
  NlMsgHandle(NlMsgHandle&& o) noexcept : m_(o.m_) { o.m_ = nullptr; }
  NlMsgHandle& operator=(NlMsgHandle&& o) noexcept {
    std::swap(m_, o.m_);
    return *this;
  }
  ~NlMsgHandle() {
    if (m_) Free(m_);
  }
  nl_msg* get() const { return m_; }

 private:
  static void Free(nl_msg* m);
  nl_msg* m_;
};

/// The rtnetlink request for `op` (flags = REQUEST | ACK | the verb's).
Result<NlMsgHandle> BuildTcMessage(const TcOp& op, int ifindex);

/// An rtnetlink socket opened inside a namespace. Thread-safe (one request at a time).
class RtnlSocket {
 public:
  static Result<std::shared_ptr<RtnlSocket>> Open(const std::string& netns_path);
  ~RtnlSocket();
  /// Sends `msg` (completing seq/pid) and reads answers until the kernel's ack or error;
  /// `on_reply` sees every other message answering it. Errors carry the kernel's
  /// extended-ack message when there is one.
  Status Transact(nl_msg* msg, const std::string& what,
                  const std::function<void(const nlmsghdr*)>& on_reply);
  const std::string& netns() const { return netns_; }

 private:
  RtnlSocket() = default;
  std::mutex mu_;
  nl_sock* sk_ = nullptr;
  std::string netns_;
};

/// A qdisc or class as the kernel reports it.
struct TcInfo {
  std::string kind;
  uint32_t handle = 0;
  uint32_t parent = 0;
  TcStats stats;
};

/// RTM_GETQDISC / RTM_GETTCLASS for one object (by handle, or by parent for a qdisc when
/// `parent` is non-zero: kTcRoot gets the root qdisc). kNotFound if absent.
Result<TcInfo> GetTcInfo(RtnlSocket& sock, int ifindex, TcOp::Object object, uint32_t handle,
                         uint32_t parent = 0);

/// The interface's IFLA_GSO_MAX_SEGS (RTM_GETLINK). kNotFound if it is gone.
Result<uint32_t> GetGsoMaxSegs(RtnlSocket& sock, int ifindex);

/// What the shaper needs to know of an interface to send frames to it: its MAC address
/// (IFLA_ADDRESS; unset without one) and the ifindex of the bridge it is a port of
/// (IFLA_MASTER; 0 if none). Errors: kNotFound, netlink errors.
struct LinkFacts {
  std::optional<std::array<uint8_t, 6>> mac;
  int master = 0;
};
Result<LinkFacts> GetLinkFacts(RtnlSocket& sock, int ifindex);
/// Sets IFLA_GSO_MAX_SEGS (RTM_NEWLINK on the existing interface).
Status SetGsoMaxSegs(RtnlSocket& sock, int ifindex, uint32_t segs);

/// if_nametoindex inside a namespace. kNotFound if absent.
Result<int> InterfaceIndex(const std::string& netns_path, const std::string& ifname);

/// Real NetlinkOps on a shared socket.
std::unique_ptr<NetlinkOps> MakeRtnlOps(std::shared_ptr<RtnlSocket> sock, int ifindex,
                                        std::string ifname);

}  // namespace gridemu::netshape
