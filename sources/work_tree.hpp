#pragma once

// A directory on disk read as a revision (for `metalsync validate PATH`, and
// `plan --repo PATH`): the user's work tree, uncommitted changes included.

#include <expected>
#include <filesystem>
#include <string>
#include <vector>

#include "sources/repo_file.hpp"

namespace metalsync {

struct WorkTree {
    std::filesystem::path root;
    std::vector<RepoFile> files;  // *.yaml / *.yml, sorted; id = size + mtime (a cheap change stamp)
};

// Lists the YAML files under `path` (a directory, or one file). Hidden
// directories (.git) are skipped; symlinks are listed as such, never followed.
std::expected<WorkTree, std::string> list_work_tree(const std::filesystem::path& path);

// Reads one listed file, refusing anything larger than max_bytes without reading it.
std::expected<std::string, std::string> read_work_tree_file(const WorkTree& tree, const RepoFile& file,
                                                             std::size_t max_bytes);

} // namespace metalsync
