#pragma once

#include <optional>

namespace metalsync {

// libgit2 1.5 has no network timeouts, so every network operation (listing
// the remote's refs, fetching) runs in a child process: the same executable
// started again with a hidden first argument, killed at its deadline. Both
// `metalsync` and every test executable call this first thing in main(); it
// returns the exit code when argv asks for the worker, nullopt otherwise.
std::optional<int> maybe_run_git_worker(int argc, char** argv);

} // namespace metalsync
