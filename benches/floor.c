/* The floor: the stages of `minictr run` done with raw system calls and nothing else, to measure how
 * far minictr is from what the kernel itself costs. benches/start.sh builds it with `cc -O2`.
 *
 *   floor [-u] [-c] [-o] [-n] ROOTFS CMD [ARG...]
 *
 * Always (variant A) — what `minictr run --network none --userns=host --no-overlay --no-cgroup
 * --no-security` does, no more: clone3(NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET|NEWCGROUP), sethostname,
 * / made private, the rootfs bound onto itself, /proc, /sys (read-only), /dev (a tmpfs with null,
 * zero, full, random, urandom and tty bound from the host, its symbolic links, devpts, shm,
 * mqueue), pivot_root(".", "."), the old root detached, lo up, RLIMIT_NOFILE, setgroups +
 * setresgid + setresuid, not dumpable, close_range(CLOEXEC), execve.
 *   -u  a user namespace: the parent writes uid_map/gid_map (0 100000 65536), the child setresuid(0)
 *   -c  a cgroup beneath this process's own: cgroup v1 (the cpu, cpuacct, memory, freezer, blkio
 *       and pids hierarchies, as minictr) or v2 (the unified hierarchy at /sys/fs/cgroup): mkdir,
 *       write memory and pids limits, attach (v1: the child writes 0 to each `tasks` file the
 *       parent opened, then unshares its cgroup namespace; v2: clone3(CLONE_INTO_CGROUP)), the
 *       container's /sys/fs/cgroup (a tmpfs with each hierarchy bound, read-only), rmdir after exit
 *   -o  overlayfs: upper and work directories made under $FLOOR_TMP (default /tmp), the overlay
 *       built by the parent with fsopen/fsconfig/fsmount and moved into the child's mount namespace
 *       with move_mount; the directories removed after exit
 *   -n  a veth pair over rtnetlink: one RTM_NEWLINK creates it with the peer already in the child's
 *       network namespace; the host end gets an address and goes up; the child brings lo and eth0
 *       up, sets the address and a default route in one batch of four requests
 * Variant B = -u -c -o, variant C = -u -c -o -n. Exit status: the command's; 125 if a stage failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#define FSOPEN_CLOEXEC_ 1
#define FSCONFIG_SET_STRING_ 1
#define FSCONFIG_CMD_CREATE_ 6
#define FSMOUNT_CLOEXEC_ 1
#define MOVE_MOUNT_F_EMPTY_PATH_ 4
#define CLOSE_RANGE_CLOEXEC_ (1U << 2)

struct clone_args_ {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "floor: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, ": %s\n", strerror(errno));
    va_end(ap);
    _exit(125);
}

static void write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write %s", path);
    close(fd);
}

/* ---- cgroups ------------------------------------------------------------------------------ */
static const char *v1_ctrls[] = {"cpu", "cpuacct", "memory", "freezer", "blkio", "pids"};
#define N_V1 (sizeof v1_ctrls / sizeof v1_ctrls[0])
static char cg_dirs[N_V1][512];
static const char *cg_names[N_V1];
static int cg_tasks[N_V1];
static int n_cg, cg_v2, cg_fd = -1;

static int own_cgroup(const char *ctrl, char *out, size_t n) { /* "" on v2 */
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[1024];
    int found = 0;
    if (!f) die("open /proc/self/cgroup");
    while (fgets(line, sizeof line, f)) {
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        int match = *ctrl ? strcmp(a + 1, ctrl) == 0 : a[1] == 0;
        if (!match) { /* "4:cpu,cpuacct:/x" lists several */
            char *tok, *save, buf[256];
            snprintf(buf, sizeof buf, "%s", a + 1);
            for (tok = strtok_r(buf, ",", &save); tok && *ctrl; tok = strtok_r(NULL, ",", &save))
                if (strcmp(tok, ctrl) == 0) match = 1;
        }
        if (match) {
            b[1 + strcspn(b + 1, "\n")] = 0;
            snprintf(out, n, "%s", b + 1);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static void cgroup_create(void) {
    char own[256];
    cg_v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    if (cg_v2) {
        if (!own_cgroup("", own, sizeof own)) die("no cgroup v2 line in /proc/self/cgroup");
        snprintf(cg_dirs[0], sizeof cg_dirs[0], "/sys/fs/cgroup%s/floor-%d",
                 strcmp(own, "/") ? own : "", getpid());
        n_cg = 1;
    } else {
        for (size_t i = 0; i < N_V1; i++) {
            if (!own_cgroup(v1_ctrls[i], own, sizeof own)) continue; /* not mounted here */
            cg_names[n_cg] = v1_ctrls[i];
            snprintf(cg_dirs[n_cg++], sizeof cg_dirs[0], "/sys/fs/cgroup/%s%s/floor-%d", v1_ctrls[i],
                     strcmp(own, "/") ? own : "", getpid());
        }
    }
    for (int i = 0; i < n_cg; i++) {
        char p[600];
        if (mkdir(cg_dirs[i], 0755) < 0) die("mkdir %s", cg_dirs[i]);
        if (cg_v2) {
            /* limits only where the parent enabled the controller for its children */
            snprintf(p, sizeof p, "%s/memory.max", cg_dirs[i]);
            if (access(p, F_OK) == 0) write_file(p, "268435456");
            snprintf(p, sizeof p, "%s/pids.max", cg_dirs[i]);
            if (access(p, F_OK) == 0) write_file(p, "1024");
            cg_fd = open(cg_dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (cg_fd < 0) die("open %s", cg_dirs[i]);
        } else {
            if (strcmp(cg_names[i], "memory") == 0 || strcmp(cg_names[i], "pids") == 0) {
                int mem = cg_names[i][0] == 'm';
                snprintf(p, sizeof p, "%s/%s", cg_dirs[i], mem ? "memory.limit_in_bytes" : "pids.max");
                write_file(p, mem ? "268435456" : "1024");
            }
            snprintf(p, sizeof p, "%s/tasks", cg_dirs[i]);
            cg_tasks[i] = open(p, O_WRONLY | O_CLOEXEC);
            if (cg_tasks[i] < 0) die("open %s", p);
        }
    }
}

static void cgroup_attach_self(void) { /* v1, in the child: v2 started it inside */
    for (int i = 0; i < n_cg && !cg_v2; i++) {
        if (write(cg_tasks[i], "0", 1) != 1) die("write %s/tasks", cg_dirs[i]);
        close(cg_tasks[i]);
    }
    if (!cg_v2 && unshare(CLONE_NEWCGROUP) < 0) die("unshare(CLONE_NEWCGROUP)");
}

static void cgroup_mount(void) { /* the container's /sys/fs/cgroup, before pivot_root */
    char dst[600];
    if (cg_v2) {
        if (mount("cgroup2", "sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0)
            die("mount cgroup2");
        return;
    }
    if (mount("tmpfs", "sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755") < 0)
        die("mount tmpfs on /sys/fs/cgroup");
    for (int i = 0; i < n_cg; i++) {
        snprintf(dst, sizeof dst, "sys/fs/cgroup/%s", cg_names[i]);
        if (mkdir(dst, 0755) < 0 || mount(cg_dirs[i], dst, NULL, MS_BIND, NULL) < 0) die("bind %s", dst);
    }
    if (mount(NULL, "sys/fs/cgroup", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) die("read-only /sys/fs/cgroup");
}

static void cgroup_remove(void) {
    for (int i = 0; i < n_cg; i++)
        for (int tries = 0; rmdir(cg_dirs[i]) < 0; tries++) {
            if (errno != EBUSY || tries > 1000) die("rmdir %s", cg_dirs[i]);
            usleep(100);
        }
}

/* ---- overlay ------------------------------------------------------------------------------ */
static char ov_base[256];

#define OPEN_TREE_CLONE_ 1
#define AT_RECURSIVE_ 0x8000
#define MOUNT_ATTR_IDMAP_ 0x100000
struct mount_attr_ { uint64_t attr_set, attr_clr, propagation, userns_fd; };

/* With a user namespace the lower layer is an idmapped copy of ROOTFS (files owned by host root are
 * owned by the container's root), as minictr does: so it needs the child's user namespace first. */
static int overlay_build(const char *lower, pid_t child) {
    char upper[300], work[300], merged[300];
    snprintf(upper, sizeof upper, "%s/upper", ov_base);
    snprintf(work, sizeof work, "%s/work", ov_base);
    snprintf(merged, sizeof merged, "%s/merged", ov_base);
    if (mkdir(ov_base, 0755) < 0 || mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0 ||
        mkdir(merged, 0755) < 0)
        die("mkdir %s/...", ov_base);
    int fs = syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC_), tree = -1;
    if (fs < 0) die("fsopen overlay");
    if (child > 0) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/ns/user", child);
        int ns = open(p, O_RDONLY | O_CLOEXEC);
        tree = syscall(SYS_open_tree, AT_FDCWD, lower, OPEN_TREE_CLONE_ | O_CLOEXEC | AT_RECURSIVE_);
        struct mount_attr_ a = {.attr_set = MOUNT_ATTR_IDMAP_, .userns_fd = ns};
        if (ns < 0 || tree < 0 || syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &a, sizeof a) < 0)
            die("idmapped copy of %s", lower);
        close(ns);
        if (chown(upper, 100000, 100000) < 0 || chown(work, 100000, 100000) < 0) die("chown upper");
        if (syscall(SYS_fsconfig, fs, 5 /* FSCONFIG_SET_FD */, "lowerdir+", NULL, tree) < 0)
            die("fsconfig lowerdir+");
    }
    if ((tree < 0 && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING_, "lowerdir", lower, 0) < 0) ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING_, "upperdir", upper, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING_, "workdir", work, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE_, NULL, NULL, 0) < 0)
        die("fsconfig overlay");
    int mfd = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC_, 0);
    if (mfd < 0) die("fsmount overlay");
    close(fs);
    if (tree >= 0) close(tree);
    return mfd;
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *f) {
    (void)st; (void)f;
    return (type == FTW_DP ? rmdir(p) : unlink(p)) < 0 ? -1 : 0;
}

static void overlay_remove(void) {
    if (nftw(ov_base, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0) die("remove %s", ov_base);
}

/* ---- rtnetlink ---------------------------------------------------------------------------- */
struct nlbuf { char b[4096]; size_t len; int n; };

static struct nlmsghdr *nl_msg(struct nlbuf *m, int type, int flags, const void *body, size_t blen) {
    struct nlmsghdr *h = (void *)(m->b + m->len);
    memset(h, 0, NLMSG_SPACE(blen));
    h->nlmsg_len = NLMSG_LENGTH(blen);
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    h->nlmsg_seq = ++m->n;
    memcpy(NLMSG_DATA(h), body, blen);
    return h;
}

static struct rtattr *nl_attr(struct nlmsghdr *h, int type, const void *d, size_t len) {
    struct rtattr *a = (void *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    if (len) memcpy(RTA_DATA(a), d, len);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
    return a;
}

static void nl_end(struct nlmsghdr *h, struct rtattr *nest) { nest->rta_len = (char *)h + h->nlmsg_len - (char *)nest; }
static void nl_done(struct nlbuf *m, struct nlmsghdr *h) { m->len += NLMSG_ALIGN(h->nlmsg_len); }

/* Send every request in m in one sendto, then read one ack per request. */
static void nl_send(struct nlbuf *m) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) die("netlink socket");
    if (send(s, m->b, m->len, 0) < 0) die("netlink send");
    for (int acked = 0; acked < m->n;) {
        char r[8192];
        ssize_t n = recv(s, r, sizeof r, 0);
        if (n < 0) die("netlink recv");
        for (struct nlmsghdr *h = (void *)r; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != NLMSG_ERROR) continue;
            struct nlmsgerr *e = NLMSG_DATA(h);
            if (e->error) { errno = -e->error; die("netlink request %u", h->nlmsg_seq); }
            acked++;
        }
    }
    close(s);
    m->len = 0; m->n = 0;
}

static void addr_msg(struct nlbuf *m, int ifindex, uint32_t addr) {
    struct ifaddrmsg ia = {.ifa_family = AF_INET, .ifa_prefixlen = 30, .ifa_index = ifindex};
    struct nlmsghdr *h = nl_msg(m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ia, sizeof ia);
    nl_attr(h, IFA_LOCAL, &addr, 4);
    nl_attr(h, IFA_ADDRESS, &addr, 4);
    nl_done(m, h);
}

static void up_msg(struct nlbuf *m, int ifindex) {
    struct ifinfomsg ii = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    nl_done(m, nl_msg(m, RTM_NEWLINK, 0, &ii, sizeof ii));
}

static uint32_t net_ip(pid_t self, int host_end) { /* a /30 per container in 10.214.0.0/16 */
    uint32_t n = self % 16384;
    return htonl((10u << 24) | (214u << 16) | (n << 2) | (host_end ? 1 : 2));
}

static void veth_host(pid_t child, uint32_t host_ip) {
    struct nlbuf m = {.len = 0};
    char host[IFNAMSIZ];
    snprintf(host, sizeof host, "fl%d", child);
    struct ifinfomsg ii = {.ifi_family = AF_UNSPEC};
    struct nlmsghdr *h = nl_msg(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ii, sizeof ii);
    nl_attr(h, IFLA_IFNAME, host, strlen(host) + 1);
    struct rtattr *li = nl_attr(h, IFLA_LINKINFO, NULL, 0);
    nl_attr(h, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = nl_attr(h, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = nl_attr(h, VETH_INFO_PEER, NULL, 0);
    struct ifinfomsg pi = {.ifi_family = AF_UNSPEC};
    memcpy((char *)h + h->nlmsg_len, &pi, sizeof pi);
    h->nlmsg_len += NLMSG_ALIGN(sizeof pi);
    nl_attr(h, IFLA_IFNAME, "eth0", 5);
    uint32_t p = child;
    nl_attr(h, IFLA_NET_NS_PID, &p, 4);
    nl_end(h, peer); nl_end(h, data); nl_end(h, li);
    nl_done(&m, h);
    nl_send(&m);
    int idx = if_nametoindex(host);
    if (!idx) die("if_nametoindex %s", host);
    addr_msg(&m, idx, host_ip);
    up_msg(&m, idx);
    nl_send(&m);
}

static void veth_child(uint32_t ip, uint32_t gw) {
    struct nlbuf m = {.len = 0};
    int eth0 = if_nametoindex("eth0");
    if (!eth0) die("if_nametoindex eth0");
    up_msg(&m, 1); /* lo */
    addr_msg(&m, eth0, ip);
    up_msg(&m, eth0);
    struct rtmsg rt = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT,
                       .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST};
    struct nlmsghdr *h = nl_msg(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
    nl_attr(h, RTA_GATEWAY, &gw, 4);
    uint32_t oif = eth0;
    nl_attr(h, RTA_OIF, &oif, 4);
    nl_done(&m, h);
    nl_send(&m);
}

/* ---- /dev and lo, as minictr makes them ---------------------------------------------------- */
static void dev_mount(void) { /* relative to the new root, before pivot_root */
    static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    static const char *links[][2] = {{"/proc/self/fd", "dev/fd"}, {"/proc/self/fd/0", "dev/stdin"},
        {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"}, {"pts/ptmx", "dev/ptmx"}};
    char src[64], dst[64];
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_STRICTATIME, "mode=755,size=65536k") < 0)
        die("mount /dev");
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        snprintf(src, sizeof src, "/dev/%s", nodes[i]);
        snprintf(dst, sizeof dst, "dev/%s", nodes[i]);
        int fd = open(dst, O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_WRONLY, 0666);
        if (fd < 0) die("create %s", dst);
        close(fd);
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0) die("bind %s", src);
    }
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlink(links[i][0], links[i][1]) < 0) die("symlink %s", links[i][1]);
    if (mkdir("dev/pts", 0755) < 0 || mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0) die("mount devpts");
    if (mkdir("dev/shm", 01777) < 0 || mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "mode=1777,size=65536k") < 0) die("mount shm");
    if (mkdir("dev/mqueue", 0755) < 0 || mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die("mount mqueue");
}

static void lo_up(void) { /* ip link set lo up, with one ioctl */
    struct ifreq ifr = {0};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
    if (s < 0 || ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("lo up");
    close(s);
}

/* ---- parent -> child: one byte, and the overlay's mount fd when there is one ------------- */
static void send_fd(int sock, int fd) {
    char x = 'x', cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&x, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    if (sendmsg(sock, &m, 0) != 1) die("wake the child");
}

static int recv_fd(int sock) { /* the fd, -1 without one, -2 when the parent is gone */
    char x, cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&x, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1) return -2;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    int fd = -1;
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* ---- the container ------------------------------------------------------------------------ */
int main(int argc, char **argv) {
    int userns = 0, cgroup = 0, overlay = 0, net = 0, c;
    while ((c = getopt(argc, argv, "+ucon")) != -1) switch (c) {
        case 'u': userns = 1; break;
        case 'c': cgroup = 1; break;
        case 'o': overlay = 1; break;
        case 'n': net = 1; break;
        default: fprintf(stderr, "usage: floor [-u] [-c] [-o] [-n] ROOTFS CMD [ARG...]\n"); return 125;
    }
    if (argc - optind < 2) { fprintf(stderr, "usage: floor [-u] [-c] [-o] [-n] ROOTFS CMD [ARG...]\n"); return 125; }
    const char *rootfs = argv[optind];
    char **cmd = argv + optind + 1;

    const char *tmp = getenv("FLOOR_TMP");
    snprintf(ov_base, sizeof ov_base, "%s/floor-%d", tmp ? tmp : "/tmp", getpid());
    int mfd = overlay && !userns ? overlay_build(rootfs, 0) : -1;
    if (cgroup) cgroup_create();
    uint32_t ip_host = net_ip(getpid(), 1), ip_ctr = net_ip(getpid(), 0);
    int sync[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) die("socketpair");

    struct clone_args_ ca = {.flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET,
                             .exit_signal = SIGCHLD};
    if (userns) ca.flags |= CLONE_NEWUSER;
    if (cgroup && cg_v2) { ca.flags |= CLONE_INTO_CGROUP; ca.cgroup = cg_fd; }
    if (!cgroup || cg_v2) ca.flags |= CLONE_NEWCGROUP; /* v1: unshared once the child moved itself */
    pid_t pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0) die("clone3");
    if (pid == 0) {
        close(sync[1]);
        int got = recv_fd(sync[0]); /* the parent's go, with the overlay when it was built late */
        if (got == -2) _exit(125);  /* the parent failed */
        if (got >= 0) mfd = got;
        if (cgroup) cgroup_attach_self();
        if (prctl(PR_SET_DUMPABLE, 0) < 0) die("PR_SET_DUMPABLE");
        if (userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) die("setresuid 0");
        if (net) veth_child(ip_ctr, ip_host);
        if (sethostname("floor", 5) < 0) die("sethostname");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
        const char *root = rootfs;
        if (overlay) {
            static char merged[300];
            snprintf(merged, sizeof merged, "%s/merged", ov_base);
            if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, merged, MOVE_MOUNT_F_EMPTY_PATH_) < 0)
                die("move_mount overlay");
            root = merged;
        } else if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
            die("bind %s", rootfs);
        }
        if (chdir(root) < 0) die("chdir %s", root);
        /* /proc before pivot_root: in a user namespace the kernel allows a new proc mount only while
         * a fully visible one is in the mount namespace (fs/namespace.c, mount_too_revealing) */
        if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /proc");
        if (mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /sys");
        dev_mount();
        if (cgroup) cgroup_mount();
        if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
        if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
        if (chdir("/") < 0) die("chdir /");
        if (!net) lo_up();
        struct rlimit nofile = {1024, 1024};
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) die("setrlimit");
        if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("setresuid");
        if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC_) < 0) die("close_range");
        execvp(cmd[0], cmd);
        _exit(errno == ENOENT ? 127 : 126);
    }
    close(sync[0]);
    if (userns) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/uid_map", pid);
        write_file(p, "0 100000 65536\n");
        snprintf(p, sizeof p, "/proc/%d/gid_map", pid);
        write_file(p, "0 100000 65536\n");
    }
    if (net) veth_host(pid, ip_host);
    if (overlay && userns) mfd = overlay_build(rootfs, pid);
    send_fd(sync[1], mfd);
    close(sync[1]);
    if (mfd >= 0) close(mfd);

    int st;
    if (waitpid(pid, &st, 0) < 0) die("waitpid");
    if (cgroup) cgroup_remove();
    if (overlay) overlay_remove();
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
