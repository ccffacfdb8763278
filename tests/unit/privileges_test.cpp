#include "vmm/privileges.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "vmm/error.hpp"

using namespace minivmm;

TEST(Privileges, UserByNameOrIds) {
    Identity root = parse_identity("root");
    EXPECT_EQ(root.uid, 0u);
    EXPECT_EQ(root.gid, 0u);
    Identity ids = parse_identity("1234:5678");
    EXPECT_EQ(ids.uid, 1234u);
    EXPECT_EQ(ids.gid, 5678u);
    // -1 would mean "leave unchanged" to setresuid: refused, not a silent no-op.
    for (const char* bad : {"nosuchuser0", "4294967295:0", "0:4294967295", "12:", ":12", "1:2:3", ""})
        EXPECT_THROW(parse_identity(bad), UserError) << bad;
}

TEST(Privileges, JailMustBeADirectoryOtherThanRoot) {
    EXPECT_NO_THROW(Confinement(std::nullopt, std::string("/tmp")));
    EXPECT_THROW(Confinement(std::nullopt, std::string("/nonexistent-minivmm-jail")), UserError);
    EXPECT_THROW(Confinement(std::nullopt, std::string("/etc/passwd")), UserError);
    EXPECT_THROW(Confinement(std::nullopt, std::string("/")), UserError);
    EXPECT_THROW(Confinement(std::nullopt, std::string("/tmp/..")), UserError);  // resolved first
    EXPECT_THROW(Confinement(std::string("nosuchuser0"), std::nullopt), UserError);
}

// Whoever can write the jail's parent may swap the checked directory for a
// symlink to / before minivmm enters it: the swap must be refused, not
// followed. In a child: entering a jail is for the whole process.
TEST(Privileges, JailSwappedForASymlinkAfterTheCheckIsRefused) {
    char base[] = "/tmp/minivmm-jail-XXXXXX";
    ASSERT_NE(mkdtemp(base), nullptr);
    std::string dir = std::string(base) + "/j", moved = std::string(base) + "/old";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int code = 3;
        try {
            Confinement c(std::nullopt, dir);
            if (rename(dir.c_str(), moved.c_str()) != 0 || symlink("/", dir.c_str()) != 0) _exit(4);
            c.enter();
            code = 1;  // entered: the swap went unseen
        } catch (const UserError& e) {
            code = std::string(e.what()).find("changed") != std::string::npos ? 0 : 2;
        } catch (...) {
        }
        _exit(code);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: jailed at the swapped path; 2: another error; 3: other exception";
    unlink(dir.c_str());
    rmdir(moved.c_str());
    rmdir(base);
}
