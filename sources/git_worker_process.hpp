#pragma once

// The parent side of the Git network steps: runs `<exe> __git-worker` in its
// own process group, sends the request as JSON on stdin and reads JSON lines
// from stdout:
//   {"event":"listed", ...}           the remote answered its refs: the deadline
//                                     becomes now + `fetch` for the rest
//   {"event":"done", ...}             the answer
//   {"event":"error","message":"..."} a failure, already worded for the operator
// At a deadline the whole group is killed with SIGKILL and reaped.

#include "sources/git_source.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <expected>
#include <filesystem>
#include <string>

namespace metalsync::git {

struct WorkerDeadlines {
    std::chrono::milliseconds connect; // until the "listed" line
    std::chrono::milliseconds fetch;   // from "listed" to "done"
};

// `remote_label` is the redacted URL, for messages written here.
std::expected<nlohmann::json, GitError> run_git_worker(const std::filesystem::path& exe, const nlohmann::json& request,
                                                       WorkerDeadlines deadlines, const std::string& remote_label);

// Shutdown: every worker running now, or started later in this process, is
// killed within a second and its run_git_worker returns an error. Safe from
// any thread; there is no way back (the daemon calls it once, when stopping).
void cancel_all_workers();

// "1s", "1.5s", "120s": how deadlines are named in messages.
std::string format_seconds(std::chrono::milliseconds duration);

} // namespace metalsync::git
