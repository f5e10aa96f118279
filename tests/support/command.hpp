#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace kontor::test {

/// What a finished command wrote and how it ended.
struct command_output {
  int exit_code = -1; ///< -1: it could not start, or was killed after its timeout
  std::string out;
  std::string err;
};

/// Runs argv (argv[0] looked up on PATH) with stdin from /dev/null; kills it after `timeout`.
command_output run_command(const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout = std::chrono::seconds(60));

} // namespace kontor::test
