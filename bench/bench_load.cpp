// bench_load: how long metalsync takes to go from a Git commit to a plan for a
// large site, and how much memory that takes. Prints figures, one per line;
// never passes or fails on them (see bench/README.md).
//
// usage: bench_load [--nodes N] [--files-per-rack K] [--nodes-per-file M]
//                   [--keep] [--skip-fork] [--resolve-worker]

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/desired_loading.hpp"
#include "reconcilers/node_planner.hpp"
#include "sources/git_source.hpp"
#include "sources/git_worker.hpp"
#include "sources/revision_loader.hpp"

#ifndef METALSYNC_BENCH_DIR
#define METALSYNC_BENCH_DIR "bench"
#endif

namespace fs = std::filesystem;
using namespace metalsync;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point start)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> v)
{
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt_ms(double ms)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, ms < 10 ? "%.2f ms" : "%.0f ms", ms);
    return buf;
}

std::string fmt_mib(long kib)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(kib) / 1024.0);
    return buf;
}

// VmHWM of this process in KiB (peak resident set), -1 when unreadable.
long vm_hwm_kib()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            return std::strtol(line.c_str() + 6, nullptr, 10);
        }
    }
    return -1;
}

long self_maxrss_kib()
{
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "bench_load: %s\n", what.c_str());
    std::exit(2);
}

void run(const std::string& command)
{
    if (std::system(command.c_str()) != 0) {
        die("command failed: " + command);
    }
}

std::string quote(const fs::path& p)
{
    std::string out = "'";
    for (char c : p.string()) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return out + "'";
}

struct ColdResult {
    double poll_ms = 0;
    double snapshot_ms = 0;
    double load_ms = 0;
    double total_ms = 0;
    std::size_t files = 0;
    std::size_t parsed = 0;
    std::string commit;
};

// One cold load: fresh state dir, fresh loader. The source and loader stay
// alive in the caller's objects so later steps can reuse them.
ColdResult cold_load(GitSource& source, RevisionLoader& loader, std::optional<DesiredState>& state)
{
    ColdResult r;
    const auto t0 = Clock::now();
    auto polled = source.poll("");
    if (!polled) {
        die("poll: " + polled.error().message);
    }
    r.poll_ms = ms_since(t0);
    const auto t1 = Clock::now();
    auto snap = source.snapshot(polled->commit);
    if (!snap) {
        die("snapshot: " + snap.error().message);
    }
    r.snapshot_ms = ms_since(t1);
    const auto t2 = Clock::now();
    auto read = [&](const RepoFile& f) -> std::expected<std::string, std::string> {
        auto blob = source.read_blob(f.id);
        if (!blob) {
            return std::unexpected(blob.error().message);
        }
        return std::move(*blob);
    };
    auto loaded = loader.load(snap->files, read);
    r.load_ms = ms_since(t2);
    r.total_ms = ms_since(t0);
    if (!loaded) {
        std::string msg = "revision invalid:";
        for (std::size_t i = 0; i < loaded.error().size() && i < 5; ++i) {
            msg += "\n  " + loaded.error()[i].to_string();
        }
        die(msg);
    }
    loaded->revision = polled->commit;
    state = std::move(*loaded);
    r.files = loader.last_stats().files;
    r.parsed = loader.last_stats().parsed;
    r.commit = polled->commit;
    return r;
}

// Under valgrind /proc/self/exe is valgrind itself: --resolve-worker runs the
// git worker from this executable's real path instead.
fs::path g_worker_exe;

GitSourceConfig source_config(const fs::path& repo, const fs::path& state_dir)
{
    GitSourceConfig c;
    if (!g_worker_exe.empty()) {
        c.worker_exe = g_worker_exe;
    }
    c.url = "file://" + repo.string();
    c.branch = "main";
    c.state_dir = state_dir;
    return c;
}

// Bumps the bench.metalsync.dev/edit annotation of the first node in `file`.
void edit_file(const fs::path& file)
{
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    const std::string key = "bench.metalsync.dev/edit: \"";
    auto at = text.find(key);
    if (at == std::string::npos) {
        die("no edit annotation in " + file.string());
    }
    at += key.size();
    auto end = text.find('"', at);
    const int value = std::stoi(text.substr(at, end - at));
    text.replace(at, end - at, std::to_string(value + 1));
    std::ofstream out(file, std::ios::trunc);
    out << text;
}

} // namespace

int main(int argc, char** argv)
{
    if (auto code = metalsync::maybe_run_git_worker(argc, argv)) {
        return *code;
    }

    int nodes = 10000;
    int files_per_rack = 5;
    int nodes_per_file = 40;
    bool keep = false;
    bool skip_fork = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> int {
            if (i + 1 >= argc) {
                die("missing value after " + a);
            }
            return std::atoi(argv[++i]);
        };
        if (a == "--nodes") {
            nodes = next();
        } else if (a == "--files-per-rack") {
            files_per_rack = next();
        } else if (a == "--nodes-per-file") {
            nodes_per_file = next();
        } else if (a == "--keep") {
            keep = true;
        } else if (a == "--skip-fork") {
            skip_fork = true;
        } else if (a == "--resolve-worker") {
            g_worker_exe = fs::read_symlink("/proc/self/exe");
        } else {
            die("usage: bench_load [--nodes N] [--files-per-rack K] [--nodes-per-file M] [--keep] [--skip-fork] [--resolve-worker]");
        }
    }

    char tmpl[] = "/tmp/metalsync-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
        die("mkdtemp failed");
    }
    const fs::path work = tmpl;
    const fs::path repo = work / "repo";
    const fs::path script = fs::path(METALSYNC_BENCH_DIR) / "generate_repo.py";

    const std::string nodes_s = std::to_string(nodes);
    std::printf("bench_load: %d nodes, %d per file, %d files per rack, work dir %s\n", nodes, nodes_per_file,
                files_per_rack, work.c_str());

    {
        const auto t = Clock::now();
        run(quote(script) + " " + quote(repo) + " " + nodes_s + " --files-per-rack " + std::to_string(files_per_rack) +
            " --nodes-per-file " + std::to_string(nodes_per_file));
        std::printf("generate repository (python + git commit, not metalsync): %s\n", fmt_ms(ms_since(t)).c_str());
    }

    // Peak RSS of a cold load, isolated in a forked child (run first, while
    // this process is still small and single-threaded).
    if (!skip_fork) {
        int fds[2];
        if (pipe(fds) != 0) {
            die("pipe failed");
        }
        std::fflush(stdout);
        const pid_t pid = fork();
        if (pid < 0) {
            die("fork failed");
        }
        if (pid == 0) {
            close(fds[0]);
            GitSource source(source_config(repo, work / "state-fork"));
            RevisionLoader loader;
            std::optional<DesiredState> state;
            cold_load(source, loader, state);
            long self[2] = {self_maxrss_kib(), vm_hwm_kib()};
            if (write(fds[1], self, sizeof self) != static_cast<ssize_t>(sizeof self)) {
                _exit(3);
            }
            _exit(0);
        }
        close(fds[1]);
        long self[2] = {-1, -1};
        const bool got = read(fds[0], self, sizeof self) == static_cast<ssize_t>(sizeof self);
        close(fds[0]);
        int status = 0;
        rusage child_ru{};
        if (wait4(pid, &status, 0, &child_ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !got) {
            die("forked cold load failed");
        }
        rusage children{};
        getrusage(RUSAGE_CHILDREN, &children);
        std::printf("peak RSS, cold load in a forked child (its own ru_maxrss): %s (target < 64 MiB)\n",
                    fmt_mib(self[0]).c_str());
        std::printf("peak RSS, forked child incl. its git worker (wait4 rusage): %s\n",
                    fmt_mib(child_ru.ru_maxrss).c_str());
        std::printf("peak RSS, RUSAGE_CHILDREN of bench (max over all children, python and git included): %s\n",
                    fmt_mib(children.ru_maxrss).c_str());
    }

    // Cold load+validate, a few times, each with a fresh state dir and loader.
    const int cold_reps = nodes <= 20000 ? 3 : 1;
    std::vector<double> poll_ms, snap_ms, load_ms, total_ms;
    std::optional<GitSource> source;
    std::optional<RevisionLoader> loader;
    std::optional<DesiredState> state;
    ColdResult last;
    long rss_after_first_cold = -1;
    for (int rep = 0; rep < cold_reps; ++rep) {
        source.emplace(source_config(repo, work / ("state-" + std::to_string(rep))));
        loader.emplace();
        state.reset();
        last = cold_load(*source, *loader, state);
        poll_ms.push_back(last.poll_ms);
        snap_ms.push_back(last.snapshot_ms);
        load_ms.push_back(last.load_ms);
        total_ms.push_back(last.total_ms);
        if (rep == 0) {
            rss_after_first_cold = vm_hwm_kib();
        }
    }
    std::printf("cold load+validate %d nodes (%zu files, %zu parsed), load step alone: %s (target < 2000 ms, median of %d)\n",
                nodes, last.files, last.parsed, fmt_ms(median(load_ms)).c_str(), cold_reps);
    std::printf("cold poll+snapshot+load %d nodes: %s (target < 2000 ms, median of %d)\n", nodes,
                fmt_ms(median(total_ms)).c_str(), cold_reps);
    std::printf("  of which poll (fetch over file:// into a fresh clone): %s\n", fmt_ms(median(poll_ms)).c_str());
    std::printf("  of which snapshot: %s\n", fmt_ms(median(snap_ms)).c_str());
    std::printf("peak RSS of this process after the first cold load (VmHWM): %s (target < 64 MiB)\n",
                fmt_mib(rss_after_first_cold).c_str());
    std::printf("desired state: %zu nodes, %zu classes, policy %s\n", state->nodes.size(), state->classes.size(),
                state->has_policy ? "yes" : "no");

    // Cold plan: N nodes against an empty (but complete) observed state.
    ObservedState observed;
    observed.complete = true;
    const std::map<std::string, NodeMemory> memory;
    {
        std::vector<double> plan_ms;
        std::size_t actions = 0;
        for (int rep = 0; rep < 5; ++rep) {
            const auto t = Clock::now();
            Plan plan = plan_nodes(PlanInput{*state, observed, memory, "bench", 1.7e9, {}, {}});
            plan_ms.push_back(ms_since(t));
            actions = plan.actions.size();
        }
        std::printf("cold plan %d nodes against empty observed state: %s (%zu actions, median of 5)\n", nodes,
                    fmt_ms(median(plan_ms)).c_str(), actions);
    }

    // One-file change: commit an edit to one node file, then poll + snapshot
    // + load (same loader: the cache serves every other file) + plan.
    {
        std::vector<fs::path> node_files;
        for (const auto& e : fs::recursive_directory_iterator(repo / "nodes")) {
            if (e.is_regular_file()) {
                node_files.push_back(e.path());
            }
        }
        std::sort(node_files.begin(), node_files.end());
        if (node_files.empty()) {
            die("no node files");
        }
        std::vector<double> change_ms, poll_c, load_c, plan_c;
        std::size_t parsed = 0;
        std::size_t max_parsed = 0;
        std::string tip = last.commit;
        const int reps = 5;
        for (int rep = 0; rep < reps; ++rep) {
            const fs::path file = node_files[(node_files.size() / 2 + static_cast<std::size_t>(rep) * 7) % node_files.size()];
            edit_file(file);
            run("git -C " + quote(repo) + " commit -q -a -m 'bench edit " + std::to_string(rep) + "'");

            const auto t0 = Clock::now();
            auto polled = source->poll(tip);
            if (!polled || !polled->changed || !polled->fetched) {
                die("poll after a change did not fetch it");
            }
            const auto t1 = Clock::now();
            auto loaded = load_commit(*source, polled->commit, *loader);
            if (!loaded || !loaded->state) {
                die("load after a change failed");
            }
            const auto t2 = Clock::now();
            Plan plan = plan_nodes(PlanInput{*loaded->state, observed, memory, "bench", 1.7e9, {}, {}});
            const auto t3 = Clock::now();
            change_ms.push_back(std::chrono::duration<double, std::milli>(t3 - t0).count());
            poll_c.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            load_c.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
            plan_c.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
            parsed = loader->last_stats().parsed;
            max_parsed = std::max(max_parsed, parsed);
            tip = polled->commit;
            state = std::move(*loaded->state);
        }
        std::printf("one-file change: poll+snapshot+load+plan %d nodes: %s (target < 100 ms, median of %d)\n", nodes,
                    fmt_ms(median(change_ms)).c_str(), reps);
        std::printf("  files parsed on the one-file change: %zu (max over runs %zu; must be 1)\n", parsed, max_parsed);
        std::printf("  of which poll (fetch of one commit): %s\n", fmt_ms(median(poll_c)).c_str());
        std::printf("  of which snapshot+load (cache warm): %s\n", fmt_ms(median(load_c)).c_str());
        std::printf("  of which plan_nodes: %s\n", fmt_ms(median(plan_c)).c_str());

        // No-change poll: the remote's tip equals what we have.
        std::vector<double> nochange_ms;
        int fetched = 0;
        for (int rep = 0; rep < 20; ++rep) {
            const auto t = Clock::now();
            auto polled = source->poll(tip);
            nochange_ms.push_back(ms_since(t));
            if (!polled) {
                die("no-change poll failed: " + polled.error().message);
            }
            fetched += polled->fetched ? 1 : 0;
        }
        std::printf("no-change poll over file://: %s (target < 50 ms, median of 20, fetched %d times; must be 0)\n",
                    fmt_ms(median(nochange_ms)).c_str(), fetched);
    }

    std::printf("peak RSS of this process at the end (ru_maxrss): %s\n", fmt_mib(self_maxrss_kib()).c_str());

    if (!keep) {
        std::error_code ec;
        fs::remove_all(work, ec);
    } else {
        std::printf("kept %s\n", work.c_str());
    }
    return 0;
}
