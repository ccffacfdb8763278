// The end of a live migration (vmm/migration_handshake.hpp) between a
// source and a fake destination, or a fake source and a destination, over
// a socketpair: the guest is committed only by "ready" then Go, and every
// other ending leaves it with the source.
#include "vmm/migration_handshake.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/unit/test_helpers.hpp"
#include "vmm/fd.hpp"
#include "vmm/state_records.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {

struct Pair {
    Fd source, destination;
    Pair() {
        int sv[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        source = Fd(sv[0]), destination = Fd(sv[1]);
    }
};

void send_record(int fd, state::Kind kind, const std::string& name, const std::string& body = {}) {
    state::RecordWriter w(fd);
    w.write(kind, name, {reinterpret_cast<const uint8_t*>(body.data()), body.size()});
}

}  // namespace

TEST(MigrationHandshake, ReadyThenGoCommits) {
    Pair p;
    std::string destination_error = "not run";
    std::thread destination([&] {
        destination_error = error_of([&] {
            migration::answer(p.destination.get(), "ready");
            migration::await_go(p.destination.get(), "migration on unix:/x", 5000);
        });
    });
    EXPECT_EQ(error_of([&] { migration::await_ready(p.source.get(), 5000); }), "(no error)");
    EXPECT_EQ(error_of([&] { migration::send_go(p.source.get(), 5000); }), "(no error)");
    destination.join();
    EXPECT_EQ(destination_error, "(no error)") << "the destination did not take the go";
}

TEST(MigrationHandshake, ARefusalFailsTheSourceWithItsReason) {
    Pair p;
    migration::answer(p.destination.get(), "refused", "--mem differs: 1024 MiB here, 512 MiB saved");
    std::string e = error_of([&] { migration::await_ready(p.source.get(), 5000); });
    EXPECT_NE(e.find("the destination refused: --mem differs"), std::string::npos) << e;
}

// A destination that never says ready: the source gives up in time (and
// then resumes its guest); one that closed, or says anything else, too.
TEST(MigrationHandshake, NoReadyIsTheSourcesFailure) {
    {
        Pair p;
        std::string e = error_of([&] { migration::await_ready(p.source.get(), 200); });
        EXPECT_NE(e.find("no answer within 200 ms"), std::string::npos) << e;
    }
    {
        Pair p;
        p.destination = Fd();
        std::string e = error_of([&] { migration::await_ready(p.source.get(), 5000); });
        EXPECT_NE(e.find("closed the connection"), std::string::npos) << e;
    }
    {
        // A version 1 destination's word: it ran the guest without a go, and
        // a version 2 source never speaks to one (the header's version).
        Pair p;
        send_record(p.destination.get(), state::Kind::Ack, "running");
        std::string e = error_of([&] { migration::await_ready(p.source.get(), 5000); });
        EXPECT_NE(e.find("other than ready or refused"), std::string::npos) << e;
    }
    {
        // Half an answer, then silence: bounded too.
        Pair p;
        uint32_t part = uint32_t(state::Kind::Ack);
        ASSERT_EQ(write(p.destination.get(), &part, sizeof part), ssize_t(sizeof part));
        std::string e = error_of([&] { migration::await_ready(p.source.get(), 200); });
        EXPECT_NE(e.find("no answer within 200 ms"), std::string::npos) << e;
    }
}

// A destination that gets no go never starts the guest: the function it
// waits in fails, whatever the source did instead.
TEST(MigrationHandshake, NoGoIsTheDestinationsRefusal) {
    {
        Pair p;  // the source silent (stuck, or its go lost)
        std::string e = error_of([&] { migration::await_go(p.destination.get(), "migration on unix:/x", 200); });
        EXPECT_NE(e.find("no answer within 200 ms"), std::string::npos) << e;
        EXPECT_NE(e.find("the guest was not started here"), std::string::npos) << e;
    }
    {
        Pair p;  // the source gave up and resumed its guest
        p.source = Fd();
        std::string e = error_of([&] { migration::await_go(p.destination.get(), "migration on unix:/x", 5000); });
        EXPECT_NE(e.find("closed the connection before its go"), std::string::npos) << e;
    }
    {
        Pair p;  // anything but go
        send_record(p.source.get(), state::Kind::End, "");
        std::string e = error_of([&] { migration::await_go(p.destination.get(), "migration on unix:/x", 5000); });
        EXPECT_NE(e.find("instead of go"), std::string::npos) << e;
    }
}

// The source counts the guest gone only if its go was written: to a
// destination that has gone, or that takes nothing, the write fails.
TEST(MigrationHandshake, AGoThatCannotBeWrittenFails) {
    {
        Pair p;  // gone after its ready: seen before the write (over TCP the write would succeed)
        p.destination = Fd();
        std::string e = error_of([&] { migration::send_go(p.source.get(), 5000); });
        EXPECT_NE(e.find("hung up"), std::string::npos) << e;
    }
    {
        Pair p;  // more after its ready: not a destination waiting for go
        ASSERT_EQ(send(p.destination.get(), "x", 1, MSG_NOSIGNAL), 1);
        std::string e = error_of([&] { migration::send_go(p.source.get(), 5000); });
        EXPECT_NE(e.find("hung up or spoke"), std::string::npos) << e;
    }
    {
        Pair p;  // its socket full: a destination stopped
        std::vector<char> fill(1 << 16, 'x');
        while (send(p.source.get(), fill.data(), fill.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
        }
        std::string e = error_of([&] { migration::send_go(p.source.get(), 200); });
        EXPECT_NE(e.find("took nothing for 200 ms"), std::string::npos) << e;
    }
}

// Answering a source that has gone is no error of the destination's: it
// learns of it waiting for the go.
TEST(MigrationHandshake, AnsweringAGoneSourceIsQuiet) {
    Pair p;
    p.source = Fd();
    EXPECT_EQ(error_of([&] { migration::answer(p.destination.get(), "ready"); }), "(no error)");
}

// A peer's reason reaches the log and the migrate reply short and inert.
TEST(MigrationHandshake, APeersTextIsShortAndPrintable) {
    std::string raw = "\x1b[2Jno\n";
    raw += std::string(400, 'a');
    std::string s = migration::printable({raw.begin(), raw.end()});
    EXPECT_EQ(s.substr(0, 7), "?[2Jno?");
    EXPECT_EQ(s.size(), 256u + 3);
    EXPECT_EQ(s.find_first_of("\x1b\n"), std::string::npos);
}
