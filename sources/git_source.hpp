#pragma once

// The Git source: follows a branch, a tag or a pinned commit of a remote
// repository in a local bare clone, and reads snapshots of it.
//
// Network steps (listing the remote's refs, fetching) run in a child process
// with a deadline (libgit2 1.5 has no network timeouts); reading a snapshot
// is local and in-process.

#include "sources/repo_file.hpp"

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

struct git_repository;  // libgit2's, opaque outside git_source.cpp

namespace metalsync {

struct GitSourceConfig {
    std::string url;                 // file:///..., /abs/path, http(s)://..., git://..., ssh://user@host:port/path or user@host:path
    std::string branch;              // follow a branch (default "main" when branch, tag and commit are all empty)
    std::string tag;                 // or follow a tag (annotated tags peeled to their commit)
    std::string commit;              // or pin a commit (full 40-hex id)
    std::string path;                // sub-path inside the repository to read ("" = root); no "..", no leading "/"
    std::filesystem::path state_dir; // the local bare clone lives in state_dir / "git"
    std::filesystem::path token_file;        // https: token read from this file (trailing newline stripped), sent as the password
    std::string username = "git";            // https username sent with the token; ssh user when the URL names none
    std::filesystem::path ssh_key_file;      // ssh private key
    std::filesystem::path known_hosts_file;  // ssh: host key must match an entry here, else the connection is refused
    std::filesystem::path ca_file;           // https CA bundle (default: system bundle /etc/ssl/certs/ca-certificates.crt)
    std::chrono::milliseconds connect_timeout{15000}; // deadline for listing the remote's refs
    std::chrono::milliseconds fetch_timeout{120000};  // deadline for a fetch
    std::filesystem::path worker_exe = "/proc/self/exe";
};

// `message` names the remote with any password stripped and never contains the token.
struct GitError {
    std::string message;
    bool timed_out = false;
};

struct CommitInfo {
    std::string id;
    std::string author_name;
    std::string author_email;
    std::int64_t time = 0; // author time, seconds since the epoch
    std::string summary;
};

struct PollResult {
    std::string commit;             // tip now known locally
    bool fetched = false;           // false when the remote's tip equalled last_commit (ls-remote only, no fetch)
    bool changed = false;           // commit != last_commit
    bool history_rewritten = false; // last_commit non-empty and not an ancestor of commit (force-push); NOT an error
};

struct Snapshot {
    CommitInfo commit;
    std::vector<RepoFile> files; // sorted by path
};

class GitSource {
public:
    explicit GitSource(GitSourceConfig config);

    // Network step, run in a child worker with a deadline: lists the remote's
    // refs and returns without fetching when the wanted tip equals last_commit
    // (and is present locally); otherwise fetches into the local bare clone
    // (created on first use) and returns the new tip. A pinned commit already
    // present locally costs no network at all.
    std::expected<PollResult, GitError> poll(const std::string& last_commit);

    // Local: the commit's metadata and every regular file under config.path
    // whose name ends in .yaml or .yml (recursively), sorted by path, with blob
    // ids. Symlinks with such names are listed with symlink = true so the
    // loader can reject them; submodules are ignored.
    std::expected<Snapshot, GitError> snapshot(const std::string& commit);

    std::expected<std::string, GitError> read_blob(const std::string& blob_id);

    [[nodiscard]] const GitSourceConfig& config() const { return m_config; }
    [[nodiscard]] std::filesystem::path repository_dir() const { return m_config.state_dir / "git"; }

private:
    // The local clone, opened once and kept for the snapshot and every
    // read_blob that follows (reopening it per blob cost ~4% of a cold load).
    // poll() drops it, so each fetch is followed by a fresh open. Not for
    // concurrent use: a GitSource belongs to one thread at a time.
    std::expected<git_repository*, GitError> local_clone();

    GitSourceConfig m_config;
    std::shared_ptr<git_repository> m_repo;  // shared, so that a GitSource stays copyable
};

} // namespace metalsync
