#include "sources/git_source.hpp"

#include "sources/git_libgit2.hpp"
#include "sources/git_remote_url.hpp"
#include "sources/git_worker_process.hpp"
#include "sources/yaml_reader.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

namespace metalsync {

namespace {

std::unexpected<GitError> error(std::string message)
{
    return std::unexpected(GitError{std::move(message), false});
}

std::expected<git::RepositoryPtr, GitError> open_clone(const std::filesystem::path& dir)
{
    git::ensure_initialised();
    git_repository* raw = nullptr;
    if (int rc = git_repository_open_bare(&raw, dir.c_str()); rc != 0) {
        return error("local clone " + dir.string() + " cannot be opened (poll first?): " +
                     git::last_error_message(rc));
    }
    return git::RepositoryPtr(raw);
}

std::expected<git::CommitPtr, GitError> lookup_commit(git_repository* repo, const std::string& id)
{
    git_oid oid;
    if (!git::parse_oid(id, oid)) {
        return error("'" + id + "' is not a full 40-hex commit id");
    }
    git_commit* raw = nullptr;
    if (int rc = git_commit_lookup(&raw, repo, &oid); rc != 0) {
        return error("commit " + id + " not found in the local clone: " + git::last_error_message(rc));
    }
    return git::CommitPtr(raw);
}

// "" stays ""; "a/b/" becomes "a/b"; "..", "." or empty segments, a leading "/"
// or a backslash are refused.
std::expected<std::string, GitError> normalise_sub_path(const std::string& path)
{
    std::string p = path;
    while (!p.empty() && p.back() == '/') {
        p.pop_back();
    }
    if (p.empty()) {
        return p;
    }
    if (path.front() == '/' || p.find('\\') != std::string::npos || p.find('\0') != std::string::npos) {
        return error("sub-path '" + path + "' must be relative, '/'-separated");
    }
    std::size_t start = 0;
    while (start <= p.size()) {
        auto slash = p.find('/', start);
        auto segment = p.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (segment.empty() || segment == "." || segment == "..") {
            return error("sub-path '" + path + "' must not hold '..', '.' or empty segments");
        }
        if (slash == std::string::npos) {
            break;
        }
        start = slash + 1;
    }
    return p;
}

bool is_yaml_name(std::string_view name)
{
    return name.ends_with(".yaml") || name.ends_with(".yml");
}

struct WalkState {
    std::vector<RepoFile>* files;
};

int collect_entry(const char* root, const git_tree_entry* entry, void* payload)
{
    auto& files = *static_cast<WalkState*>(payload)->files;
    const git_filemode_t mode = git_tree_entry_filemode(entry);
    const std::string_view name = git_tree_entry_name(entry);
    if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE && mode != GIT_FILEMODE_LINK) {
        return 0; // trees are walked into; submodules (commit entries) ignored
    }
    if (!is_yaml_name(name)) {
        return 0;
    }
    RepoFile file;
    file.path = std::string(root) + std::string(name);
    file.id = git::oid_hex(*git_tree_entry_id(entry));
    file.symlink = mode == GIT_FILEMODE_LINK;
    files.push_back(std::move(file));
    return 0;
}

} // namespace

GitSource::GitSource(GitSourceConfig config) : m_config(std::move(config))
{
    if (m_config.branch.empty() && m_config.tag.empty() && m_config.commit.empty()) {
        m_config.branch = "main";
    }
}

std::expected<PollResult, GitError> GitSource::poll(const std::string& last_commit)
{
    m_repo.reset();
    const std::string label = redact_url(m_config.url);
    if (!parse_remote_url(m_config.url)) {
        return error("git remote " + label + ": unsupported URL");
    }
    int chosen = static_cast<int>(!m_config.branch.empty()) + static_cast<int>(!m_config.tag.empty()) +
                 static_cast<int>(!m_config.commit.empty());
    if (chosen != 1) {
        return error("git remote " + label + ": set exactly one of branch, tag and commit");
    }
    std::string kind = !m_config.commit.empty() ? "commit" : !m_config.tag.empty() ? "tag" : "branch";
    std::string name = !m_config.commit.empty() ? m_config.commit : !m_config.tag.empty() ? m_config.tag
                                                                                            : m_config.branch;
    git_oid pinned;
    if (kind == "commit") {
        if (!git::parse_oid(name, pinned)) {
            return error("git remote " + label + ": pinned commit '" + name + "' is not a full 40-hex id");
        }
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    }

    PollResult result;
    bool local_pin = false;
    if (kind == "commit") {
        // A pinned commit already fetched costs no network at all.
        if (auto repo = open_clone(repository_dir()); repo && lookup_commit(repo->get(), name)) {
            local_pin = true;
            result.commit = name;
        }
    }
    if (!local_pin) {
        nlohmann::json request{
            {"op", "poll"},
            {"url", m_config.url},
            {"ref_kind", kind},
            {"ref", name},
            {"repo_dir", repository_dir().string()},
            {"last_commit", last_commit},
            {"token_file", m_config.token_file.string()},
            {"username", m_config.username},
            {"ssh_key_file", m_config.ssh_key_file.string()},
            {"known_hosts_file", m_config.known_hosts_file.string()},
            {"ca_file", m_config.ca_file.string()},
        };
        auto answer = git::run_git_worker(m_config.worker_exe, request,
                                          {m_config.connect_timeout, m_config.fetch_timeout}, label);
        if (!answer) {
            return std::unexpected(answer.error());
        }
        result.commit = answer->value("commit", std::string());
        result.fetched = answer->value("fetched", false);
    }

    result.changed = result.commit != last_commit;
    if (!last_commit.empty() && result.changed) {
        auto repo = open_clone(repository_dir());
        if (!repo) {
            return std::unexpected(repo.error());
        }
        git_oid tip;
        git_oid last;
        if (!git::parse_oid(result.commit, tip)) {
            return error("git remote " + label + ": worker answered an invalid commit id");
        }
        // A last commit unknown here after fetching the whole branch is not in its history.
        bool ancestor = git::parse_oid(last_commit, last) && lookup_commit(repo->get(), last_commit) &&
                        git_graph_descendant_of(repo->get(), &tip, &last) == 1;
        result.history_rewritten = !ancestor;
        // Opened after the fetch: the snapshot that follows a change reads through it.
        m_repo = std::shared_ptr<git_repository>(repo->release(), git_repository_free);
    }
    return result;
}

std::expected<Snapshot, GitError> GitSource::snapshot(const std::string& commit)
{
    auto sub_path = normalise_sub_path(m_config.path);
    if (!sub_path) {
        return std::unexpected(sub_path.error());
    }
    auto repo = local_clone();
    if (!repo) {
        return std::unexpected(repo.error());
    }
    auto found = lookup_commit(*repo, commit);
    if (!found) {
        return std::unexpected(found.error());
    }
    git_commit* c = found->get();

    Snapshot snap;
    snap.commit.id = git::oid_hex(*git_commit_id(c));
    if (const git_signature* author = git_commit_author(c)) {
        snap.commit.author_name = author->name != nullptr ? author->name : "";
        snap.commit.author_email = author->email != nullptr ? author->email : "";
        snap.commit.time = author->when.time;
    }
    const char* summary = git_commit_summary(c);
    snap.commit.summary = summary != nullptr ? summary : "";

    git_tree* raw_tree = nullptr;
    if (int rc = git_commit_tree(&raw_tree, c); rc != 0) {
        return error("commit " + commit + ": cannot read its tree: " + git::last_error_message(rc));
    }
    git::TreePtr tree(raw_tree);
    if (!sub_path->empty()) {
        git_tree_entry* raw_entry = nullptr;
        if (git_tree_entry_bypath(&raw_entry, tree.get(), sub_path->c_str()) != 0) {
            return error("path '" + *sub_path + "' does not exist in commit " + commit);
        }
        git::TreeEntryPtr entry(raw_entry);
        if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE) {
            return error("path '" + *sub_path + "' in commit " + commit + " is not a directory");
        }
        git_object* raw_sub = nullptr;
        if (int rc = git_tree_entry_to_object(&raw_sub, *repo, entry.get()); rc != 0) {
            return error("path '" + *sub_path + "' in commit " + commit + ": " + git::last_error_message(rc));
        }
        tree.reset(reinterpret_cast<git_tree*>(raw_sub));
    }

    WalkState state{&snap.files};
    if (int rc = git_tree_walk(tree.get(), GIT_TREEWALK_PRE, collect_entry, &state); rc != 0) {
        return error("commit " + commit + ": cannot walk its tree: " + git::last_error_message(rc));
    }
    std::ranges::sort(snap.files, {}, &RepoFile::path);
    return snap;
}

std::expected<git_repository*, GitError> GitSource::local_clone()
{
    if (!m_repo) {
        auto repo = open_clone(repository_dir());
        if (!repo) {
            return std::unexpected(repo.error());
        }
        m_repo = std::shared_ptr<git_repository>(repo->release(), git_repository_free);
    }
    return m_repo.get();
}

std::expected<std::string, GitError> GitSource::read_blob(const std::string& blob_id)
{
    git_oid oid;
    if (!git::parse_oid(blob_id, oid)) {
        return error("'" + blob_id + "' is not a full 40-hex blob id");
    }
    auto repo = local_clone();
    if (!repo) {
        return std::unexpected(repo.error());
    }
    // The size first, from the object's header: a 100 MB blob would be
    // inflated and copied (twice its size in memory) only to be refused.
    // Worded like read_work_tree_file's refusal.
    if (git_odb* odb = nullptr; git_repository_odb(&odb, *repo) == 0) {
        std::size_t size = 0;
        git_object_t type = GIT_OBJECT_INVALID;
        const int rc = git_odb_read_header(&size, &type, odb, &oid);
        git_odb_free(odb);
        if (const std::size_t limit = YamlLimits{}.max_file_bytes; rc == 0 && size > limit) {
            return error("file is " + std::to_string(size / (1024 * 1024)) + " MiB; the limit is " +
                         std::to_string(limit / (1024 * 1024)) + " MiB");
        }
    }
    git_blob* raw = nullptr;
    if (int rc = git_blob_lookup(&raw, *repo, &oid); rc != 0) {
        return error("blob " + blob_id + " not found in the local clone: " + git::last_error_message(rc));
    }
    git::BlobPtr blob(raw);
    const auto* data = static_cast<const char*>(git_blob_rawcontent(blob.get()));
    return std::string(data, static_cast<std::size_t>(git_blob_rawsize(blob.get())));
}

} // namespace metalsync
