#include "sources/work_tree.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace metalsync {

namespace fs = std::filesystem;

static bool is_yaml_name(const fs::path& p)
{
    auto ext = p.extension().string();
    return ext == ".yaml" || ext == ".yml";
}

std::expected<WorkTree, std::string> list_work_tree(const fs::path& path)
{
    std::error_code ec;
    auto status = fs::symlink_status(path, ec);
    if (ec || !fs::exists(status)) {
        return std::unexpected(path.string() + ": no such file or directory");
    }
    WorkTree tree;
    auto stamp = [](const fs::path& p) {
        std::error_code e;
        auto size = fs::file_size(p, e);
        auto time = fs::last_write_time(p, e).time_since_epoch().count();
        return std::to_string(size) + "-" + std::to_string(time);
    };
    if (fs::is_regular_file(status)) {
        tree.root = path.parent_path().empty() ? fs::path(".") : path.parent_path();
        tree.files.push_back({path.filename().string(), stamp(path), false});
        return tree;
    }
    if (!fs::is_directory(status)) {
        return std::unexpected(path.string() + ": not a regular file or directory");
    }
    tree.root = path;
    fs::recursive_directory_iterator it(path, fs::directory_options::none, ec);
    if (ec) {
        return std::unexpected(path.string() + ": " + ec.message());
    }
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) {
            return std::unexpected(it->path().string() + ": " + ec.message());
        }
        const auto& entry = *it;
        auto name = entry.path().filename().string();
        if (entry.is_directory(ec) && !entry.is_symlink(ec) && name.starts_with(".")) {
            it.disable_recursion_pending();
            continue;
        }
        if (!is_yaml_name(entry.path())) {
            continue;
        }
        // lexically: fs::relative would follow a symlink and name its target.
        auto rel = entry.path().lexically_relative(path).generic_string();
        if (entry.is_symlink(ec)) {
            tree.files.push_back({rel, "symlink", true});
        } else if (entry.is_regular_file(ec)) {
            tree.files.push_back({rel, stamp(entry.path()), false});
        }
    }
    std::sort(tree.files.begin(), tree.files.end(), [](const RepoFile& a, const RepoFile& b) { return a.path < b.path; });
    return tree;
}

std::expected<std::string, std::string> read_work_tree_file(const WorkTree& tree, const RepoFile& file,
                                                             std::size_t max_bytes)
{
    auto full = tree.root / file.path;
    std::error_code ec;
    auto size = fs::file_size(full, ec);
    if (ec) {
        return std::unexpected(ec.message());
    }
    if (size > max_bytes) {
        // The parser reports the size with its position; hand it a marker
        // of the same size class without reading 100 MB into memory.
        return std::unexpected("file is " + std::to_string(size / (1024 * 1024)) + " MiB; the limit is " +
                               std::to_string(max_bytes / (1024 * 1024)) + " MiB");
    }
    std::ifstream in(full, std::ios::binary);
    if (!in) {
        return std::unexpected("cannot open");
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

} // namespace metalsync
