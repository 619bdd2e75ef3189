#pragma once

// RAII ownership of libgit2 objects and the one-time library initialisation.
// Internal to sources/: nothing outside the Git source includes libgit2.

#include <git2.h>

#include <memory>
#include <string>

namespace metalsync::git {

template <auto Free>
struct Deleter {
    template <typename T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};

using RepositoryPtr = std::unique_ptr<git_repository, Deleter<git_repository_free>>;
using RemotePtr = std::unique_ptr<git_remote, Deleter<git_remote_free>>;
using ObjectPtr = std::unique_ptr<git_object, Deleter<git_object_free>>;
using CommitPtr = std::unique_ptr<git_commit, Deleter<git_commit_free>>;
using TreePtr = std::unique_ptr<git_tree, Deleter<git_tree_free>>;
using TreeEntryPtr = std::unique_ptr<git_tree_entry, Deleter<git_tree_entry_free>>;
using BlobPtr = std::unique_ptr<git_blob, Deleter<git_blob_free>>;
using ReferencePtr = std::unique_ptr<git_reference, Deleter<git_reference_free>>;

// git_libgit2_init once per process; libgit2 stays initialised until exit.
void ensure_initialised();

// The message of libgit2's last error on this thread, or a fallback naming the code.
std::string last_error_message(int code);

// Parses a full 40-hex object id; false for anything else (short ids included).
bool parse_oid(const std::string& hex, git_oid& out);

std::string oid_hex(const git_oid& oid);

} // namespace metalsync::git
