#include "plumbing_nl.h"

#include <netlink/errno.h>

namespace gridemu::agent::internal {

Status NlStatus(int err, const std::string& what) {
  err = err < 0 ? -err : err;
  std::string msg = what + ": " + nl_geterror(err);
  switch (err) {
    case NLE_EXIST:
      return AlreadyExistsError(std::move(msg));
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return NotFoundError(std::move(msg));
    case NLE_PERM:
    case NLE_NOACCESS:
      return PermissionDeniedError(msg + " (needs CAP_NET_ADMIN)");
    case NLE_INVAL:
    case NLE_RANGE:
    case NLE_MSGSIZE:
      return InvalidArgumentError(std::move(msg));
    case NLE_OPNOTSUPP:
    case NLE_AF_NOSUPPORT:
      return UnimplementedError(msg + " (not supported by this kernel)");
    case NLE_NOMEM:
      return ResourceExhaustedError(std::move(msg));
    case NLE_BUSY:
      return UnavailableError(std::move(msg));
    default:
      return InternalError(std::move(msg));
  }
}

}  // namespace gridemu::agent::internal
