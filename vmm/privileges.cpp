#include "vmm/privileges.hpp"

#include <cap-ng.h>
#include <dirent.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <regex>
#include <vector>

#include "vmm/error.hpp"

namespace minivmm {

namespace {
// This process's own threads (kernel workers that KVM or vhost-net may have
// started in it run only in the kernel: they do not count). Read before any jail.
unsigned threads_running() {
    DIR* d = opendir("/proc/self/task");
    if (!d) return 0;  // no /proc: nothing to check against
    unsigned n = 0;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/stat");
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        size_t close = stat.rfind(')');  // the name may hold anything
        unsigned long flags = 0;
        if (close != std::string::npos) {
            std::istringstream rest(stat.substr(close + 2));
            std::string field;
            for (int i = 0; i < 7 && rest >> field; i++) {}  // state ... tty_nr tpgid: flags is the 9th field
            flags = std::strtoul(field.c_str(), nullptr, 10);
        }
        constexpr unsigned long kUserWorker = 0x4000, kKthread = 0x200000;  // PF_USER_WORKER, PF_KTHREAD
        n += !(flags & (kUserWorker | kKthread));
    }
    closedir(d);
    return n;
}

std::string why(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// A private mount namespace, so nothing done here is seen outside, in which
// the jail is bind-mounted onto itself read-only and without devices,
// set-uid or executables, then made the root. Without CAP_SYS_CHROOT
// (dropped next) the process cannot climb out of it.
void enter_jail(const std::string& dir) {
    if (unshare(CLONE_NEWNS) < 0) throw UserError("--jail " + dir + ": " + why("new mount namespace"));
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
        throw UserError("--jail " + dir + ": " + why("making mounts private"));
    if (mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) < 0 ||
        mount(nullptr, dir.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) < 0)
        throw UserError("--jail " + dir + ": " + why("bind mount"));
    if (chdir(dir.c_str()) < 0 || chroot(".") < 0 || chdir("/") < 0)
        throw UserError("--jail " + dir + ": " + why("chroot"));
}
}  // namespace

Identity parse_identity(const std::string& s) {
    static const std::regex ids(R"((\d{1,10}):(\d{1,10}))");
    std::smatch m;
    if (std::regex_match(s, m, ids)) {
        unsigned long uid = std::stoul(m[1]), gid = std::stoul(m[2]);
        // -1 means "unchanged" to setresuid: never a user to become.
        if (uid >= UINT_MAX || gid >= UINT_MAX) throw UserError("--user " + s + ": uid or gid out of range");
        return {static_cast<uid_t>(uid), static_cast<gid_t>(gid), s};
    }
    std::vector<char> buf(16384);
    passwd pw{}, *found = nullptr;
    int err = getpwnam_r(s.c_str(), &pw, buf.data(), buf.size(), &found);
    if (err || !found) throw UserError("--user " + s + ": no such user (give a user name or UID:GID)");
    return {pw.pw_uid, pw.pw_gid, s};
}

Confinement::Confinement(const std::optional<std::string>& user, const std::optional<std::string>& jail) {
    if (user) user_ = parse_identity(*user);
    if (jail) {
        char* real = realpath(jail->c_str(), nullptr);
        if (!real) throw UserError("--jail " + *jail + ": " + std::strerror(errno));
        jail_ = real;
        std::free(real);
        jail_fd_ = Fd(::open(jail_->c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat st, root;
        if (!jail_fd_ || fstat(jail_fd_.get(), &st) < 0) throw UserError("--jail " + *jail + ": not a directory");
        if (stat("/", &root) == 0 && st.st_dev == root.st_dev && st.st_ino == root.st_ino)
            throw UserError("--jail " + *jail + ": the host's own root is no jail");
        jail_dev_ = st.st_dev, jail_ino_ = st.st_ino;
    }
}

void Confinement::enter() {
    if (threads_running() > 1) throw InternalError("confinement entered with threads already running");
    if (jail_) {
        enter_jail(*jail_);
        // The path was used again above: whoever can write its parent could
        // have swapped it meanwhile. The root must be the directory checked,
        // seen through the read-only bind mount.
        struct stat st;
        struct statvfs vfs;
        if (stat("/", &st) < 0 || st.st_dev != jail_dev_ || st.st_ino != jail_ino_ || statvfs("/", &vfs) < 0 ||
            !(vfs.f_flag & ST_RDONLY))
            throw UserError("--jail " + *jail_ + ": the directory changed while minivmm entered it");
        jail_fd_ = Fd();
    }
    // Before the switch: what we hold now, so a user without CAP_SETPCAP
    // (minivmm run as an ordinary user) is not asked to clear the bounding set.
    capng_get_caps_process();
    bool may_bound = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
    capng_clear(CAPNG_SELECT_BOTH);
    if (user_) {
        int rc = capng_change_id(static_cast<int>(user_->uid), static_cast<int>(user_->gid),
                                 capng_flags_t(CAPNG_DROP_SUPP_GRP | (may_bound ? CAPNG_CLEAR_BOUNDING : 0)));
        if (rc != 0)
            throw UserError("--user " + user_->name + ": cannot switch to uid " + std::to_string(user_->uid) +
                            " (" + (may_bound ? "error " + std::to_string(rc) : "minivmm must start as root") +
                            ")");
    } else if (capng_apply(may_bound ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS) != 0) {
        throw InternalError("dropping capabilities");
    }
    // No exec can give anything back; and no other process of this user may
    // ptrace or read this one's memory (the guest's RAM is in it).
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) throw internal_error("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) throw internal_error("PR_SET_DUMPABLE");
}

std::string Confinement::describe() const {
    std::string s = "no capabilities, no_new_privs";
    if (user_) s += ", uid " + std::to_string(user_->uid) + " gid " + std::to_string(user_->gid);
    if (jail_) s += ", jailed in " + *jail_;
    return s;
}

}  // namespace minivmm
