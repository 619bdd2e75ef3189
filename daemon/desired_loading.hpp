#pragma once

// Getting a revision's desired state: from a work tree on disk, or from the
// configured Git remote (poll, snapshot, load). Shared by `validate`, `plan`
// and the daemon loop.

#include <expected>
#include <filesystem>
#include <string>

#include "daemon/daemon_config.hpp"
#include "sources/desired_state.hpp"
#include "sources/diagnostic.hpp"
#include "sources/git_source.hpp"
#include "sources/revision_loader.hpp"

namespace metalsync {

struct LoadedRevision {
    std::string label;        // "work tree PATH" or "commit abc1234"
    CommitInfo commit;        // empty id for a work tree
    std::expected<DesiredState, Diagnostics> state;
};

// Reads PATH (a directory or one file). The error string is for "could not
// run" (exit 2); validation problems are in `state`.
std::expected<LoadedRevision, std::string> load_work_tree(const std::filesystem::path& path, RevisionLoader& loader);

// Loads one commit already present in the local clone.
std::expected<LoadedRevision, std::string> load_commit(GitSource& source, const std::string& commit,
                                                      RevisionLoader& loader);

// Prefixes every diagnostic's file with `root` (so editors can open it).
void prefix_paths(Diagnostics& diagnostics, const std::filesystem::path& root);

} // namespace metalsync
