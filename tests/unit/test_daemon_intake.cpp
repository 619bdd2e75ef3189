// The Git half of a tick against real Git repositories and a real SQLite
// store: accepted and rejected revisions, the last good one kept in force,
// force-pushes followed and recorded.

#include <doctest/doctest.h>

#include "daemon/revision_intake.hpp"
#include "daemon/event_names.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using namespace metalsync::test;

namespace {

const char* k_node = R"(apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata:
  name: NAME
spec:
  bmc: {driver: fake-hardware, address: ADDR}
  ports:
    - mac: MAC
  provisionState: available
)";

std::string node_yaml(const std::string& name, const std::string& addr, const std::string& mac)
{
    std::string s = k_node;
    s.replace(s.find("NAME"), 4, name);
    s.replace(s.find("ADDR"), 4, addr);
    s.replace(s.find("MAC"), 3, mac);
    return s;
}

struct Fixture {
    TempDir tmp{"intake"};
    std::filesystem::path remote = tmp / "remote";
    std::filesystem::path state = tmp / "state";

    Fixture()
    {
        std::filesystem::create_directories(remote);
        std::filesystem::create_directories(state);
        git({"init", "-q", "-b", "main"});
        git({"config", "user.name", "Ada Operator"});
        git({"config", "user.email", "ada@example.invalid"});
    }

    void git(std::vector<std::string> args)
    {
        args.insert(args.begin(), {"git", "-C", remote.string()});
        run_ok(args);
    }

    void commit(const std::string& path, const std::string& content, const std::string& message)
    {
        write_file(remote / path, content);
        git({"add", "-A"});
        git({"commit", "-q", "-m", message});
    }

    std::string head() { return run_ok({"git", "-C", remote.string(), "rev-parse", "HEAD"}).substr(0, 40); }

    GitSourceConfig config()
    {
        GitSourceConfig c;
        c.url = "file://" + remote.string();
        c.branch = "main";
        c.state_dir = state;
        return c;
    }
};

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("intake: a broken commit is rejected whole and the last good revision stays in force")
    {
        Fixture f;
        f.commit("nodes/a.yaml", node_yaml("node-a", "192.0.2.1", "aa:bb:cc:00:00:01"), "add node-a");
        const auto good = f.head();

        auto store = Store::open(f.state / "metalsync.db");
        REQUIRE(store);
        GitSource source(f.config());
        RevisionIntake intake(source, *store);

        auto first = intake.poll(1000);
        REQUIRE(first.polled_ok);
        CHECK(first.accepted);
        REQUIRE(intake.current());
        CHECK(intake.current()->nodes.size() == 1);
        CHECK(intake.current()->revision == good);

        // A second node whose MAC collides, plus a syntax error elsewhere: both reported.
        f.commit("nodes/b.yaml", node_yaml("node-b", "192.0.2.2", "AA:BB:CC:00:00:01"), "add node-b");
        f.commit("nodes/c.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: [\n", "broken");
        const auto bad = f.head();
        auto second = intake.poll(1001);
        REQUIRE(second.polled_ok);
        CHECK(second.new_revision);
        CHECK_FALSE(second.accepted);
        REQUIRE(second.rejection.size() >= 2);
        bool mac_error = false;
        bool syntax_error = false;
        for (const auto& line : second.rejection) {
            mac_error = mac_error || line.find("nodes/b.yaml:8:") == 0;
            syntax_error = syntax_error || line.find("nodes/c.yaml:") == 0;
        }
        CHECK(mac_error);
        CHECK(syntax_error);
        // Nothing of the bad revision is in force.
        CHECK(intake.current()->revision == good);
        CHECK(intake.current()->nodes.size() == 1);

        auto rec = store->revision(bad);
        REQUIRE(rec);
        REQUIRE(*rec);
        CHECK((*rec)->status == RevisionStatus::rejected);
        CHECK((*rec)->author_name == "Ada Operator");
        CHECK((*rec)->errors.size() == second.rejection.size());
        auto last_good = store->last_accepted_revision();
        REQUIRE(last_good);
        CHECK((*last_good)->commit_id == good);
        CHECK(store->load_desired(bad)->empty());

        // Polling the same bad tip again evaluates nothing new.
        auto again = intake.poll(1002);
        CHECK(again.polled_ok);
        CHECK_FALSE(again.new_revision);

        // The fix is accepted.
        f.commit("nodes/c.yaml", node_yaml("node-c", "192.0.2.3", "aa:bb:cc:00:00:03"), "fix c");
        f.commit("nodes/b.yaml", node_yaml("node-b", "192.0.2.2", "aa:bb:cc:00:00:02"), "fix b");
        auto third = intake.poll(1003);
        CHECK(third.accepted);
        CHECK(intake.current()->nodes.size() == 3);
        // Only the changed files were parsed again.
        CHECK(intake.loader().last_stats().parsed == 2);

        EventFilter filter;
        filter.name = std::string(events::k_revision_rejected);
        auto rejected = store->list_events(filter);
        REQUIRE(rejected);
        CHECK(rejected->size() == 1);
    }

    TEST_CASE("intake: a force-push is followed and recorded as an event, not an error")
    {
        Fixture f;
        f.commit("a.yaml", node_yaml("node-a", "192.0.2.1", "aa:bb:cc:00:00:01"), "one");
        f.commit("b.yaml", node_yaml("node-b", "192.0.2.2", "aa:bb:cc:00:00:02"), "two");
        auto store = Store::open(f.state / "metalsync.db");
        REQUIRE(store);
        GitSource source(f.config());
        RevisionIntake intake(source, *store);
        REQUIRE(intake.poll(1).accepted);
        CHECK(intake.current()->nodes.size() == 2);

        f.git({"reset", "-q", "--hard", "HEAD~1"});
        f.commit("c.yaml", node_yaml("node-c", "192.0.2.3", "aa:bb:cc:00:00:03"), "rewritten");
        auto r = intake.poll(2);
        CHECK(r.polled_ok);
        CHECK(r.history_rewritten);
        CHECK(r.accepted);
        CHECK(intake.current()->nodes.contains("node-c"));
        CHECK_FALSE(intake.current()->nodes.contains("node-b"));
        EventFilter filter;
        filter.name = std::string(events::k_git_history_rewritten);
        CHECK(store->list_events(filter)->size() == 1);
    }

    TEST_CASE("intake: after a restart the accepted revision is restored from the store and the clone")
    {
        Fixture f;
        f.commit("a.yaml", node_yaml("node-a", "192.0.2.1", "aa:bb:cc:00:00:01"), "one");
        {
            auto store = Store::open(f.state / "metalsync.db");
            REQUIRE(store);
            GitSource source(f.config());
            RevisionIntake intake(source, *store);
            REQUIRE(intake.poll(1).accepted);
        }
        auto store = Store::open(f.state / "metalsync.db");
        REQUIRE(store);
        GitSource source(f.config());
        RevisionIntake intake(source, *store);
        intake.restore();
        REQUIRE(intake.current());
        CHECK(intake.current()->nodes.contains("node-a"));
        // Nothing moved: the poll evaluates nothing.
        auto r = intake.poll(2);
        CHECK(r.polled_ok);
        CHECK_FALSE(r.new_revision);
    }

    TEST_CASE("intake: an unreachable remote is reported and recorded; the revision in force is kept")
    {
        Fixture f;
        f.commit("a.yaml", node_yaml("node-a", "192.0.2.1", "aa:bb:cc:00:00:01"), "one");
        auto store = Store::open(f.state / "metalsync.db");
        REQUIRE(store);
        GitSource source(f.config());
        RevisionIntake intake(source, *store);
        REQUIRE(intake.poll(1).accepted);
        std::filesystem::rename(f.remote, f.tmp / "moved");
        auto r = intake.poll(2);
        CHECK_FALSE(r.polled_ok);
        CHECK_FALSE(r.error.empty());
        REQUIRE(intake.current());
        CHECK(intake.current()->nodes.contains("node-a"));
        EventFilter filter;
        filter.name = std::string(events::k_git_poll_failed);
        CHECK(store->list_events(filter)->size() == 1);
    }
}
