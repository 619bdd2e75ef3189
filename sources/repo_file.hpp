#pragma once

#include <string>

namespace metalsync {

// One file of a revision: its path relative to the configured sub-path, and
// an id that changes when its content does (the Git blob id, or a content
// hash for a work tree). The loader caches parsed files by (path, id).
struct RepoFile {
    std::string path;
    std::string id;
    bool symlink = false;  // symlinks are never followed: the loader rejects them
};

} // namespace metalsync
