// The control socket's request lines: every malformed one is an error reply
// that names what is wrong, and a good one reaches the target.
#include "vmm/api_protocol.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace minivmm;
using json = nlohmann::ordered_json;

namespace {

struct FakeTarget : ApiTarget {
    std::vector<std::string> calls;
    std::string nic_asked;
    bool fail_pause = false;
    json status() override {
        calls.push_back("status");
        return {{"state", "running"}, {"vcpus", 1}};
    }
    json stats(const std::string& nic) override {
        calls.push_back("stats");
        nic_asked = nic;
        return {{"nics", json::array()}};
    }
    json pause() override {
        calls.push_back("pause");
        if (fail_pause) throw ApiError("the VM is stopping");
        return {{"state", "paused"}};
    }
    json resume() override {
        calls.push_back("resume");
        return {{"state", "running"}};
    }
    json quit() override {
        calls.push_back("quit");
        return {};
    }
    json snapshot(Fd file, const std::string& name, bool stop) override {
        calls.push_back("snapshot " + name + (stop ? " stop" : " resume") + (file ? " fd" : " nofd"));
        return {};
    }
    json migrate(Fd conn, const std::string& uri) override {
        calls.push_back("migrate " + uri + (conn ? " fd" : " nofd"));
        return {{"state", "migrated"}};
    }
};

json reply(const std::string& line, FakeTarget& t) {
    std::string out = api_handle_line(line, t);
    EXPECT_FALSE(out.empty());
    EXPECT_EQ(out.back(), '\n');
    EXPECT_EQ(out.find('\n'), out.size() - 1) << "a reply is one line: " << out;
    return json::parse(out);
}

}  // namespace

TEST(ApiProtocol, MalformedLinesGetErrorRepliesNamingTheFault) {
    struct Case {
        std::string line, error_has;
    };
    const Case cases[] = {
        {"", "not valid JSON"},
        {"   ", "not valid JSON"},
        {"{", "not valid JSON"},
        {"{\"cmd\":\"status\"", "not valid JSON"},
        {"{\"cmd\":\"status\"}}", "not valid JSON"},
        {"{\"cmd\":\"status\"} {\"cmd\":\"pause\"}", "not valid JSON"},
        {"status", "not valid JSON"},
        {"\xff\xfe{}", "not valid JSON"},
        {std::string("{\"cmd\":\"st\0atus\"}", 17), "not valid JSON"},
        {"[\"status\"]", "JSON object"},
        {"\"status\"", "JSON object"},
        {"42", "JSON object"},
        {"null", "JSON object"},
        {"{}", "no \"cmd\""},
        {"{\"command\":\"status\"}", "no \"cmd\""},
        {"{\"cmd\":1}", "must be a string"},
        {"{\"cmd\":null}", "must be a string"},
        {"{\"cmd\":[\"status\"]}", "must be a string"},
        {"{\"cmd\":{\"name\":\"status\"}}", "must be a string"},
        {"{\"cmd\":\"\"}", "unknown command ''"},
        {"{\"cmd\":\"STATUS\"}", "unknown command 'STATUS'"},
        {"{\"cmd\":\"snapshot\"}", "needs a file passed"},
        {"{\"cmd\":\"migrate\"}", "needs a file passed"},
        {"{\"cmd\":\"restore\"}", "unknown command 'restore'"},
        {"{\"cmd\":\"status\",\"verbose\":true}", "takes no argument 'verbose'"},
        {"{\"cmd\":\"pause\",\"nic\":\"net0\"}", "takes no argument 'nic'"},
        {"{\"cmd\":\"stats\",\"nic\":0}", "argument 'nic' must be a string"},
        {"{\"cmd\":\"stats\",\"nic\":[\"net0\"]}", "argument 'nic' must be a string"},
        {"{\"cmd\":\"stats\",\"nic\":null}", "argument 'nic' must be a string"},
        {"{\"cmd\":\"stats\",\"queue\":\"rx0\"}", "takes no argument 'queue'"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.line);
        FakeTarget t;
        json r = reply(c.line, t);
        EXPECT_EQ(r["ok"], false);
        ASSERT_TRUE(r["error"].is_string());
        EXPECT_NE(r["error"].get<std::string>().find(c.error_has), std::string::npos) << r.dump();
        EXPECT_TRUE(t.calls.empty()) << "a bad request reached the target";
    }
}

TEST(ApiProtocol, GoodRequestsReachTheTargetAndSayOk) {
    FakeTarget t;
    json r = reply("{\"cmd\":\"status\"}", t);
    EXPECT_EQ(r, json::parse(R"({"ok":true,"state":"running","vcpus":1})"));
    EXPECT_EQ(r.begin().key(), "ok");  // first, for a human reading it
    EXPECT_EQ(reply(" { \"cmd\" : \"pause\" } ", t)["state"], "paused");
    EXPECT_EQ(reply("{\"cmd\":\"resume\"}\r", t)["state"], "running");  // a CRLF client
    EXPECT_EQ(reply("{\"cmd\":\"quit\"}", t), json::parse(R"({"ok":true})"));
    EXPECT_EQ(reply("{\"cmd\":\"stats\",\"nic\":\"net1\"}", t)["ok"], true);
    EXPECT_EQ(t.nic_asked, "net1");
    EXPECT_EQ(reply("{\"cmd\":\"stats\"}", t)["ok"], true);
    EXPECT_EQ(t.nic_asked, "");
    EXPECT_EQ(t.calls, (std::vector<std::string>{"status", "pause", "resume", "quit", "stats", "stats"}));
}

TEST(ApiProtocol, SnapshotTakesThePassedFileAndChecksThen) {
    FakeTarget t;
    PassedFds fds;
    EXPECT_NE(reply(R"({"cmd":"snapshot","file":"a"})", t)["error"].get<std::string>().find("needs a file"),
              std::string::npos);
    for (int i = 0; i < 3; i++) fds.emplace_back(::dup(1));
    auto with_fds = [&](const std::string& line) { return json::parse(api_handle_line(line, t, &fds)); };
    EXPECT_EQ(with_fds(R"({"cmd":"snapshot","file":"a"})")["ok"], true);
    EXPECT_EQ(fds.size(), 2u);
    // A refused request still takes its file: the next one's is the next file.
    EXPECT_NE(with_fds(R"({"cmd":"snapshot","then":"later"})")["error"].get<std::string>().find("'then'"),
              std::string::npos);
    EXPECT_EQ(with_fds(R"({"cmd":"status"})")["ok"], true);  // takes no file: the file waits
    EXPECT_EQ(fds.size(), 1u);
    EXPECT_EQ(with_fds(R"({"cmd":"snapshot","file":"b","then":"stop"})")["ok"], true);
    EXPECT_TRUE(fds.empty());
    ASSERT_GE(t.calls.size(), 2u);
    EXPECT_EQ(t.calls[t.calls.size() - 3], "snapshot a resume fd");
    EXPECT_EQ(t.calls[t.calls.size() - 2], "status");
    EXPECT_EQ(t.calls.back(), "snapshot b stop fd");
    // migrate takes its connection the same way.
    EXPECT_NE(with_fds(R"({"cmd":"migrate","uri":"unix:/x"})")["error"].get<std::string>().find("needs a file"),
              std::string::npos);
    fds.emplace_back(::dup(1));
    EXPECT_EQ(with_fds(R"({"cmd":"migrate","uri":"unix:/x"})")["state"], "migrated");
    EXPECT_EQ(t.calls.back(), "migrate unix:/x fd");
    EXPECT_NE(with_fds(R"({"cmd":"migrate","to":"x"})")["error"].get<std::string>().find("no argument 'to'"),
              std::string::npos);
}

TEST(ApiProtocol, TargetErrorsBecomeErrorReplies) {
    FakeTarget t;
    t.fail_pause = true;
    json r = reply("{\"cmd\":\"pause\"}", t);
    EXPECT_EQ(r, json::parse(R"({"ok":false,"error":"the VM is stopping"})"));
}

TEST(ApiProtocol, OverlongLineIsRefusedUnparsed) {
    FakeTarget t;
    std::string pad(kMaxRequestLine, ' ');
    // Valid JSON, but over the limit: refused before parsing.
    json r = reply("{\"cmd\":\"status\"}" + pad, t);
    EXPECT_EQ(r["ok"], false);
    EXPECT_NE(r["error"].get<std::string>().find("longer than 65536"), std::string::npos);
    EXPECT_TRUE(t.calls.empty());
    // At the limit: served.
    std::string at = "{\"cmd\":\"status\"}";
    at += std::string(kMaxRequestLine - at.size(), ' ');
    EXPECT_EQ(reply(at, t)["ok"], true);
}

TEST(ApiProtocol, DeepNestingIsAnErrorNotACrash) {
    FakeTarget t;
    std::string deep = std::string(20000, '[') + std::string(20000, ']');
    json r = reply(deep, t);
    EXPECT_EQ(r["ok"], false);
}

TEST(ApiProtocol, ErrorEchoOfBadUtf8StaysOneValidLine) {
    FakeTarget t;
    // Valid JSON escapes that decode to a lone surrogate are refused by the
    // parser; raw bytes that are not UTF-8 too; either way the reply is JSON.
    for (std::string line : {std::string("{\"cmd\":\"\\ud800\"}"), std::string("{\"cmd\":\"\xc3\x28\"}")}) {
        json r = reply(line, t);
        EXPECT_EQ(r["ok"], false);
    }
}

// Whatever a command throws is that request's error reply, never the end
// of the API thread (and with it the VM): a failed allocation, a thread
// that could not start, anything else of the standard library's.
TEST(ApiProtocol, AnythingACommandThrowsIsAnErrorReply) {
    struct Throwing : FakeTarget {
        int kind = 0;
        json status() override {
            switch (kind) {
                case 0: throw std::bad_alloc();
                case 1: throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "thread");
                case 2: throw std::out_of_range("vector::at");
                default: throw std::runtime_error("something else");
            }
        }
    } t;
    const char* want[] = {"out of memory", "thread", "vector::at", "something else"};
    for (t.kind = 0; t.kind < 4; t.kind++) {
        ::testing::internal::CaptureStderr();
        json r = reply(R"({"cmd":"status"})", t);
        ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(r["ok"], false);
        EXPECT_NE(r["error"].get<std::string>().find(want[t.kind]), std::string::npos) << r.dump();
    }
    // The next request is served as ever.
    EXPECT_EQ(reply(R"({"cmd":"resume"})", t)["state"], "running");
}
