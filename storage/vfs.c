/* The POSIX vfs: each operation is the system call, nothing more. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage.h"

static int px_open(sl_vfs *vfs, const char *path, int flags, int mode)
{
	(void)vfs;
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int px_close(sl_vfs *vfs, int fd)
{
	(void)vfs;
	return close(fd) < 0 ? -errno : 0;
}

static ssize_t px_pread(sl_vfs *vfs, int fd, void *buf, size_t len, uint64_t off)
{
	(void)vfs;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t px_pwrite(sl_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off)
{
	(void)vfs;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* no progress: never loop forever */
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int px_fdatasync(sl_vfs *vfs, int fd)
{
	(void)vfs;
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int px_ftruncate(sl_vfs *vfs, int fd, uint64_t len)
{
	(void)vfs;
	return ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
}

static int px_fallocate(sl_vfs *vfs, int fd, uint64_t off, uint64_t len)
{
	(void)vfs;
	int rv = posix_fallocate(fd, (off_t)off, (off_t)len);
	return -rv;
}

static int px_fsize(sl_vfs *vfs, int fd, uint64_t *size)
{
	(void)vfs;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int px_rename(sl_vfs *vfs, const char *from, const char *to)
{
	(void)vfs;
	return rename(from, to) < 0 ? -errno : 0;
}

static int px_unlink(sl_vfs *vfs, const char *path)
{
	(void)vfs;
	return unlink(path) < 0 ? -errno : 0;
}

static int px_mkdir(sl_vfs *vfs, const char *path, int mode)
{
	(void)vfs;
	return mkdir(path, (mode_t)mode) < 0 ? -errno : 0;
}

static int px_fsync_dir(sl_vfs *vfs, const char *path)
{
	(void)vfs;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rv = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rv;
}

static int px_list_dir(sl_vfs *vfs, const char *path,
		       int (*fn)(void *arg, const char *name), void *arg)
{
	(void)vfs;
	DIR *d = opendir(path);
	if (d == NULL)
		return -errno;
	int rv = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rv = fn(arg, de->d_name);
		if (rv != 0)
			break;
		errno = 0;
	}
	if (rv == 0 && errno != 0)
		rv = -errno;
	closedir(d);
	return rv;
}

static sl_vfs posix_vfs = {
	.open = px_open,
	.close = px_close,
	.pread = px_pread,
	.pwrite = px_pwrite,
	.fdatasync = px_fdatasync,
	.ftruncate = px_ftruncate,
	.fallocate = px_fallocate,
	.fsize = px_fsize,
	.rename = px_rename,
	.unlink = px_unlink,
	.mkdir = px_mkdir,
	.fsync_dir = px_fsync_dir,
	.list_dir = px_list_dir,
};

sl_vfs *sl_vfs_posix(void)
{
	return &posix_vfs;
}

int sl_vfs_sync_parent(sl_vfs *vfs, const char *path)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == path)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
	return vfs->fsync_dir(vfs, parent);
}
