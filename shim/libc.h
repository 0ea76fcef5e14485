/* libc.h: pointers to the real libc functions that the shim interposes.
 *
 * Everything inside the library calls real_<call>() for raw I/O, never the
 * hooked name. Each pointer is resolved with dlsym(RTLD_NEXT) by
 * libc_resolve_all() at load, and lazily on first use if a hook runs before
 * that (another library's constructor, say). */
#ifndef TLSSHIM_SHIM_LIBC_H
#define TLSSHIM_SHIM_LIBC_H

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, return type, parameter list) for every interposed call. */
#define LIBC_CALLS(X)                                                          \
  X(socket, int, (int, int, int))                                              \
  X(connect, int, (int, const struct sockaddr *, socklen_t))                   \
  X(accept, int, (int, struct sockaddr *, socklen_t *))                        \
  X(accept4, int, (int, struct sockaddr *, socklen_t *, int))                  \
  X(read, ssize_t, (int, void *, size_t))                                      \
  X(write, ssize_t, (int, const void *, size_t))                               \
  X(recv, ssize_t, (int, void *, size_t, int))                                 \
  X(send, ssize_t, (int, const void *, size_t, int))                           \
  X(recvfrom, ssize_t,                                                         \
    (int, void *, size_t, int, struct sockaddr *, socklen_t *))                \
  X(sendto, ssize_t,                                                           \
    (int, const void *, size_t, int, const struct sockaddr *, socklen_t))      \
  X(readv, ssize_t, (int, const struct iovec *, int))                          \
  X(writev, ssize_t, (int, const struct iovec *, int))                         \
  X(recvmsg, ssize_t, (int, struct msghdr *, int))                             \
  X(sendmsg, ssize_t, (int, const struct msghdr *, int))                       \
  X(sendfile, ssize_t, (int, int, off_t *, size_t))                            \
  X(sendfile64, ssize_t, (int, int, off64_t *, size_t))                        \
  X(sendmmsg, int, (int, struct mmsghdr *, unsigned int, int))                 \
  X(recvmmsg, int,                                                             \
    (int, struct mmsghdr *, unsigned int, int, struct timespec *))             \
  X(pread, ssize_t, (int, void *, size_t, off_t))                              \
  X(pread64, ssize_t, (int, void *, size_t, off64_t))                          \
  X(pwrite, ssize_t, (int, const void *, size_t, off_t))                       \
  X(pwrite64, ssize_t, (int, const void *, size_t, off64_t))                   \
  X(preadv, ssize_t, (int, const struct iovec *, int, off_t))                  \
  X(preadv64, ssize_t, (int, const struct iovec *, int, off64_t))              \
  X(pwritev, ssize_t, (int, const struct iovec *, int, off_t))                 \
  X(pwritev64, ssize_t, (int, const struct iovec *, int, off64_t))             \
  X(preadv2, ssize_t, (int, const struct iovec *, int, off_t, int))            \
  X(preadv64v2, ssize_t, (int, const struct iovec *, int, off64_t, int))       \
  X(pwritev2, ssize_t, (int, const struct iovec *, int, off_t, int))           \
  X(pwritev64v2, ssize_t, (int, const struct iovec *, int, off64_t, int))      \
  X(splice, ssize_t, (int, off64_t *, int, off64_t *, size_t, unsigned int))   \
  X(tee, ssize_t, (int, int, size_t, unsigned int))                            \
  X(copy_file_range, ssize_t, (int, off64_t *, int, off64_t *, size_t,         \
                               unsigned int))                                  \
  X(close_range, int, (unsigned int, unsigned int, int))                       \
  X(closefrom, void, (int))                                                    \
  X(close, int, (int))                                                         \
  X(shutdown, int, (int, int))                                                 \
  X(dup, int, (int))                                                           \
  X(dup2, int, (int, int))                                                     \
  X(dup3, int, (int, int, int))                                                \
  X(fcntl, int, (int, int, ...))                                               \
  X(fcntl64, int, (int, int, ...))                                             \
  X(ioctl, int, (int, unsigned long, ...))                                     \
  X(getsockopt, int, (int, int, int, void *, socklen_t *))                     \
  X(setsockopt, int, (int, int, int, const void *, socklen_t))                 \
  X(fork, pid_t, (void))                                                       \
  X(vfork, pid_t, (void))                                                      \
  X(execve, int, (const char *, char *const[], char *const[]))                 \
  X(execveat, int, (int, const char *, char *const[], char *const[], int))     \
  X(fexecve, int, (int, char *const[], char *const[]))                         \
  X(execvpe, int, (const char *, char *const[], char *const[]))                \
  X(getaddrinfo, int,                                                          \
    (const char *, const char *, const struct addrinfo *,                      \
     struct addrinfo **))                                                      \
  X(gethostbyname, struct hostent *, (const char *))                           \
  X(gethostbyname2, struct hostent *, (const char *, int))                     \
  X(gethostbyname_r, int,                                                      \
    (const char *, struct hostent *, char *, size_t, struct hostent **,        \
     int *))                                                                   \
  X(gethostbyname2_r, int,                                                     \
    (const char *, int, struct hostent *, char *, size_t, struct hostent **,   \
     int *))                                                                   \
  X(poll, int, (struct pollfd *, nfds_t, int))                                 \
  X(ppoll, int,                                                                \
    (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))      \
  X(select, int, (int, fd_set *, fd_set *, fd_set *, struct timeval *))        \
  X(pselect, int,                                                              \
    (int, fd_set *, fd_set *, fd_set *, const struct timespec *,               \
     const sigset_t *))                                                        \
  X(epoll_create, int, (int))                                                  \
  X(epoll_create1, int, (int))                                                 \
  X(epoll_ctl, int, (int, int, int, struct epoll_event *))                     \
  X(epoll_wait, int, (int, struct epoll_event *, int, int))                    \
  X(epoll_pwait, int, (int, struct epoll_event *, int, int, const sigset_t *)) \
  X(epoll_pwait2, int,                                                         \
    (int, struct epoll_event *, int, const struct timespec *,                  \
     const sigset_t *))

#define LIBC_DECLARE(name, ret, params)                                        \
  typedef ret(*libc_##name##_fn) params;                                       \
  extern libc_##name##_fn libc_real_##name;                                    \
  libc_##name##_fn libc_resolve_##name(void);
LIBC_CALLS(LIBC_DECLARE)
#undef LIBC_DECLARE

/* REAL(call) is the real function, resolved on first use if need be. */
#define REAL(name)                                                             \
  (__builtin_expect(libc_real_##name != NULL, 1) ? libc_real_##name            \
                                                 : libc_resolve_##name())

/* The names the library calls, one per entry of LIBC_CALLS. */
#define real_socket REAL(socket)
#define real_connect REAL(connect)
#define real_accept REAL(accept)
#define real_accept4 REAL(accept4)
#define real_read REAL(read)
#define real_write REAL(write)
#define real_recv REAL(recv)
#define real_send REAL(send)
#define real_recvfrom REAL(recvfrom)
#define real_sendto REAL(sendto)
#define real_readv REAL(readv)
#define real_writev REAL(writev)
#define real_recvmsg REAL(recvmsg)
#define real_sendmsg REAL(sendmsg)
#define real_sendfile REAL(sendfile)
#define real_sendfile64 REAL(sendfile64)
#define real_sendmmsg REAL(sendmmsg)
#define real_recvmmsg REAL(recvmmsg)
#define real_pread REAL(pread)
#define real_pread64 REAL(pread64)
#define real_pwrite REAL(pwrite)
#define real_pwrite64 REAL(pwrite64)
#define real_preadv REAL(preadv)
#define real_preadv64 REAL(preadv64)
#define real_pwritev REAL(pwritev)
#define real_pwritev64 REAL(pwritev64)
#define real_preadv2 REAL(preadv2)
#define real_preadv64v2 REAL(preadv64v2)
#define real_pwritev2 REAL(pwritev2)
#define real_pwritev64v2 REAL(pwritev64v2)
#define real_splice REAL(splice)
#define real_tee REAL(tee)
#define real_copy_file_range REAL(copy_file_range)
#define real_close_range REAL(close_range)
#define real_closefrom REAL(closefrom)
#define real_close REAL(close)
#define real_shutdown REAL(shutdown)
#define real_dup REAL(dup)
#define real_dup2 REAL(dup2)
#define real_dup3 REAL(dup3)
#define real_fcntl REAL(fcntl)
#define real_fcntl64 REAL(fcntl64)
#define real_ioctl REAL(ioctl)
#define real_getsockopt REAL(getsockopt)
#define real_setsockopt REAL(setsockopt)
#define real_fork REAL(fork)
#define real_vfork REAL(vfork)
#define real_execve REAL(execve)
#define real_execveat REAL(execveat)
#define real_fexecve REAL(fexecve)
#define real_execvpe REAL(execvpe)
#define real_getaddrinfo REAL(getaddrinfo)
#define real_gethostbyname REAL(gethostbyname)
#define real_gethostbyname2 REAL(gethostbyname2)
#define real_gethostbyname_r REAL(gethostbyname_r)
#define real_gethostbyname2_r REAL(gethostbyname2_r)
#define real_poll REAL(poll)
#define real_ppoll REAL(ppoll)
#define real_select REAL(select)
#define real_pselect REAL(pselect)
#define real_epoll_create REAL(epoll_create)
#define real_epoll_create1 REAL(epoll_create1)
#define real_epoll_ctl REAL(epoll_ctl)
#define real_epoll_wait REAL(epoll_wait)
#define real_epoll_pwait REAL(epoll_pwait)
#define real_epoll_pwait2 REAL(epoll_pwait2)

/* libc_resolve_all resolves every pointer now. Idempotent. */
void libc_resolve_all(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_LIBC_H */
