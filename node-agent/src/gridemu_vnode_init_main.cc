// gridemu-vnode-init: PID 1 of every netns-runtime vnode (see vnode_init.h).
// Started by the agent only; fd 3 must be the control socket.
#include "gridemu/node-agent/vnode_init.h"

int main(int argc, char** argv) { return gridemu::agent::vnode_init::RunVnodeInit(argc, argv); }
