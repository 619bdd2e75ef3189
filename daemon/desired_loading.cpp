#include "daemon/desired_loading.hpp"

#include "sources/work_tree.hpp"

namespace metalsync {

std::expected<LoadedRevision, std::string> load_work_tree(const std::filesystem::path& path, RevisionLoader& loader)
{
    auto tree = list_work_tree(path);
    if (!tree) {
        return std::unexpected(tree.error());
    }
    const std::size_t max_bytes = YamlLimits{}.max_file_bytes;
    auto read = [&](const RepoFile& f) { return read_work_tree_file(*tree, f, max_bytes); };
    LoadedRevision out{"work tree " + path.string(), {}, loader.load(tree->files, read)};
    if (!out.state) {
        prefix_paths(out.state.error(), tree->root);
    }
    return out;
}

std::expected<LoadedRevision, std::string> load_commit(GitSource& source, const std::string& commit,
                                                      RevisionLoader& loader)
{
    auto snapshot = source.snapshot(commit);
    if (!snapshot) {
        return std::unexpected(snapshot.error().message);
    }
    auto read = [&](const RepoFile& f) -> std::expected<std::string, std::string> {
        auto blob = source.read_blob(f.id);
        if (!blob) {
            return std::unexpected(blob.error().message);
        }
        return std::move(*blob);
    };
    LoadedRevision out{"commit " + commit.substr(0, 12), snapshot->commit, loader.load(snapshot->files, read)};
    if (out.state) {
        out.state->revision = commit;
    }
    return out;
}

void prefix_paths(Diagnostics& diagnostics, const std::filesystem::path& root)
{
    if (root.empty() || root == ".") {
        return;
    }
    for (auto& d : diagnostics) {
        d.file = (root / d.file).generic_string();
    }
}

} // namespace metalsync
