// A power cut for one process, for the @idem/valkey power-loss test: loaded into valkey-server
// with LD_PRELOAD, it holds every write() to an append-only file (a path holding ".aof") in the
// process's own memory until that file is fsynced (fsync, fdatasync) or closed. A SIGKILL then
// loses exactly what a power cut would lose, what was written but not yet on disk: without the
// shim the kernel's page cache keeps those writes across a process kill, and nothing is ever lost.
// Writes that glibc makes inside fwrite (the rewrite child's RDB base) bypass the shim: they are
// fsynced before use either way. Built by scripts/servers/powerloss.sh.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FD 65536

struct held {
  char *data;
  size_t len, cap;
  int kind; /* 0: not looked at yet, 1: an append-only file (held), 2: anything else */
};

static struct held fds[MAX_FD];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);

static void init(void) {
  if (real_write) return;
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  real_close = dlsym(RTLD_NEXT, "close");
  real_write = dlsym(RTLD_NEXT, "write");
}

static int is_aof(int fd) {
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 0) return 0;
  path[n] = 0;
  return strstr(path, ".aof") != NULL;
}

/* Writes what fd holds to the file; called with the lock held. */
static int release(int fd) {
  struct held *h = &fds[fd];
  size_t off = 0;
  while (off < h->len) {
    ssize_t n = real_write(fd, h->data + off, h->len - off);
    if (n < 0) return -1;
    off += (size_t)n;
  }
  h->len = 0;
  return 0;
}

ssize_t write(int fd, const void *buf, size_t count) {
  init();
  if (fd < 0 || fd >= MAX_FD) return real_write(fd, buf, count);
  pthread_mutex_lock(&lock);
  struct held *h = &fds[fd];
  if (h->kind == 0) h->kind = is_aof(fd) ? 1 : 2;
  if (h->kind != 1) {
    pthread_mutex_unlock(&lock);
    return real_write(fd, buf, count);
  }
  if (h->len + count > h->cap) {
    size_t cap = h->cap ? h->cap : 1 << 16;
    while (cap < h->len + count) cap *= 2;
    char *data = realloc(h->data, cap);
    if (!data) {
      pthread_mutex_unlock(&lock);
      return -1;
    }
    h->data = data;
    h->cap = cap;
  }
  memcpy(h->data + h->len, buf, count);
  h->len += count;
  pthread_mutex_unlock(&lock);
  return (ssize_t)count;
}

static int synced(int fd, int (*sync)(int)) {
  init();
  if (fd >= 0 && fd < MAX_FD) {
    pthread_mutex_lock(&lock);
    int failed = fds[fd].kind == 1 && release(fd) != 0;
    pthread_mutex_unlock(&lock);
    if (failed) return -1;
  }
  return sync(fd);
}

int fsync(int fd) { return synced(fd, real_fsync ? real_fsync : dlsym(RTLD_NEXT, "fsync")); }
int fdatasync(int fd) { return synced(fd, real_fdatasync ? real_fdatasync : dlsym(RTLD_NEXT, "fdatasync")); }

int close(int fd) {
  init();
  if (fd >= 0 && fd < MAX_FD) {
    pthread_mutex_lock(&lock);
    if (fds[fd].kind == 1) release(fd);
    fds[fd].kind = 0;
    pthread_mutex_unlock(&lock);
  }
  return real_close(fd);
}
