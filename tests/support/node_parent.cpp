// kontor-node-parent DATA_DIR LOG PID_FILE: starts a kontor-node through node_process, waits until
// it is ready, writes its pid to PID_FILE and then waits to be killed. The test of node_process
// SIGKILLs this process and expects the node to die with it.

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/support/node_process.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DATA_DIR LOG PID_FILE\n", argv[0]);
    return 2;
  }
  kontor::test::node_process node{argv[1], argv[2]};
  if (!node.wait_ready()) {
    std::fprintf(stderr, "node did not become ready\n");
    return 1;
  }
  // Written whole, then renamed: the test never reads half a pid.
  const std::string tmp = std::string(argv[3]) + ".tmp";
  std::ofstream(tmp) << node.pid() << "\n";
  std::filesystem::rename(tmp, argv[3]);
  for (;;)
    ::pause(); // until killed
}
