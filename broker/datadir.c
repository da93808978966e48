/* A node's data directory. See datadir.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "datadir.h"
#include "errors.h"

__attribute__((format(printf, 3, 4))) static int errf(char *errmsg, int rv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, SL_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
	return rv;
}

/* mkdir -p; each new directory's entry synced in its parent. */
static int make_dirs(const char *dir, char *errmsg)
{
	char path[PATH_MAX];
	if (dir[0] == '\0')
		return errf(errmsg, SL_EINVALID_ARGUMENT, "data_dir is empty");
	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
		return errf(errmsg, SL_EINVALID_ARGUMENT, "data_dir is too long");
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, 0755) == 0) {
			/* The new entry must survive a crash: sync its parent. */
			char *slash = strrchr(path, '/');
			if (slash != NULL)
				*slash = '\0';
			int fd = open(slash == NULL ? "." : slash == path ? "/" : path,
				      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (slash != NULL)
				*slash = '/';
			if (fd >= 0) {
				fsync(fd);
				close(fd);
			}
		} else if (errno != EEXIST) {
			return errf(errmsg, SL_ESTORAGE, "%s: mkdir: %s", path, strerror(errno));
		}
		*p = c;
		if (c == '\0')
			break;
	}
	return SL_OK;
}

static int take_lock(struct sl_datadir *d, const char *dir, char *errmsg)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: open: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			return errf(errmsg, SL_ELOCKED,
				    "data directory %s is in use by another sluiced (pid %s)", dir,
				    pid[0] ? pid : "unknown");
		return errf(errmsg, SL_ESTORAGE, "%s: flock: %s", path, strerror(e));
	}
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
		int e = errno;
		close(fd);
		return errf(errmsg, SL_ESTORAGE, "%s: write: %s", path, strerror(e));
	}
	d->lock_fd = fd;
	return SL_OK;
}

/* node.id from d, replaced atomically and durably. */
static int write_identity(struct sl_datadir *d, const char *path, char *errmsg)
{
	char tmp[PATH_MAX + 8], text[192], dir[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	int len = snprintf(text, sizeof(text), "node_id=%llu\nuuid=%s\n",
			   (unsigned long long)d->node_id, d->uuid);
	if (d->cluster_id[0] != '\0')
		len += snprintf(text + len, sizeof(text) - (size_t)len, "cluster_id=%s\n",
				d->cluster_id);
	if (d->has_controller_group)
		len += snprintf(text + len, sizeof(text) - (size_t)len, "controller_group=%u\n",
				d->controller_group);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: open: %s", tmp, strerror(errno));
	bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
	int e = errno;
	close(fd);
	if (!ok || rename(tmp, path) != 0) {
		e = ok ? errno : e;
		unlink(tmp);
		return errf(errmsg, SL_ESTORAGE, "%s: %s", path, strerror(e));
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		e = errno;
		if (dfd >= 0)
			close(dfd);
		return errf(errmsg, SL_ESTORAGE, "%s: fsync: %s", dir, strerror(e));
	}
	close(dfd);
	return SL_OK;
}

static int read_identity(struct sl_datadir *d, uint64_t node_id, const char *path, char *errmsg)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return errno == ENOENT ? SL_ENOT_FOUND
				       : errf(errmsg, SL_ESTORAGE, "%s: %s", path, strerror(errno));
	char text[256];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	/* Exactly "node_id=N\nuuid=U\n", N in 1..2^31-1, U a UUID, then
	 * optionally "cluster_id=C\n", C a UUID, then optionally
	 * "controller_group=G\n", G in 0..2^32-1. */
	unsigned long long id = 0;
	const char *p = text;
	bool ok = strncmp(p, "node_id=", 8) == 0 && p[8] >= '1' && p[8] <= '9';
	for (p += 8; ok && *p >= '0' && *p <= '9'; p++) {
		id = id * 10 + (unsigned long long)(*p - '0');
		ok = id <= 2147483647;
	}
	char uuid[37] = "";
	uuid_t u;
	char cluster[37] = "";
	ok = ok && strncmp(p, "\nuuid=", 6) == 0 && strlen(p + 6) >= 37 && p[6 + 36] == '\n';
	if (ok) {
		memcpy(uuid, p + 6, 36);
		ok = uuid_parse(uuid, u) == 0;
		p += 6 + 37;
	}
	if (ok && strncmp(p, "cluster_id=", 11) == 0) {
		ok = strlen(p + 11) >= 37 && p[11 + 36] == '\n';
		if (ok) {
			memcpy(cluster, p + 11, 36);
			ok = uuid_parse(cluster, u) == 0;
			p += 11 + 37;
		}
	}
	unsigned long long group = 0;
	bool has_group = false;
	if (ok && *p != '\0') {
		ok = strncmp(p, "controller_group=", 17) == 0 && p[17] >= '0' && p[17] <= '9';
		for (p += 17; ok && *p >= '0' && *p <= '9'; p++) {
			group = group * 10 + (unsigned long long)(*p - '0');
			ok = group <= UINT32_MAX;
		}
		ok = ok && strcmp(p, "\n") == 0;
		has_group = ok;
	}
	if (!ok)
		return errf(errmsg, SL_ELOG_CORRUPT,
			    "%s is damaged (expected node_id=N and uuid=U lines); restore it, or "
			    "start this node on an empty data directory (it then rejoins as a new disk)",
			    path);
	if (id != node_id)
		return errf(errmsg, SL_EINVALID_ARGUMENT,
			    "data directory belongs to node %llu, but node_id is %llu (%s)", id,
			    (unsigned long long)node_id, path);
	memcpy(d->uuid, uuid, sizeof(d->uuid));
	memcpy(d->cluster_id, cluster, sizeof(d->cluster_id));
	d->controller_group = (uint32_t)group;
	d->has_controller_group = has_group;
	return SL_OK;
}

/* peers: "node_id=N uuid=U\n" lines; a later line for N replaces an
 * earlier one (the peer's new disk took its place). A torn last line (a
 * crash while appending: no newline) is ignored; anything else that does
 * not parse is damage. */
static int read_peers(struct sl_datadir *d, char *errmsg)
{
	FILE *f = fopen(d->peers_path, "re");
	if (f == NULL)
		return errno == ENOENT ? SL_OK
				       : errf(errmsg, SL_ESTORAGE, "%s: %s", d->peers_path,
					      strerror(errno));
	char line[256];
	int rv = SL_OK;
	unsigned lineno = 0;
	while (rv == SL_OK && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		size_t len = strlen(line);
		if (len == 0 || line[len - 1] != '\n') {
			if (fgetc(f) == EOF)
				break; /* torn tail */
			rv = SL_ELOG_CORRUPT;
			break;
		}
		unsigned long long id;
		char uuid[37];
		int used = 0;
		uuid_t u;
		if (sscanf(line, "node_id=%llu uuid=%36s\n%n", &id, uuid, &used) != 2 ||
		    (size_t)used != len || id == 0 || strlen(uuid) != 36 ||
		    uuid_parse(uuid, u) != 0) {
			rv = SL_ELOG_CORRUPT;
			break;
		}
		size_t i = 0;
		while (i < d->npeers && d->peers[i].id != id)
			i++;
		if (i == SL_DATADIR_MAX_PEERS) {
			rv = SL_ELOG_CORRUPT;
			break;
		}
		d->peers[i].id = id;
		memcpy(d->peers[i].uuid, uuid, sizeof(uuid));
		d->npeers += i == d->npeers;
	}
	fclose(f);
	if (rv != SL_OK)
		return errf(errmsg, rv,
			    "%s is damaged at line %u (expected node_id=N uuid=U lines); restore it "
			    "(removing it makes this node trust any disk its peers come back with)",
			    d->peers_path, lineno);
	return SL_OK;
}

int sl_datadir_pin_peer(struct sl_datadir *d, uint64_t id, const char *uuid, bool replace,
			char *errmsg)
{
	uuid_t u;
	if (strlen(uuid) != 36 || uuid_parse(uuid, u) != 0)
		return errf(errmsg, SL_EINVALID_ARGUMENT, "UUID '%.64s' does not parse", uuid);
	size_t at = 0;
	while (at < d->npeers && d->peers[at].id != id)
		at++;
	if (at < d->npeers && strcmp(d->peers[at].uuid, uuid) == 0)
		return SL_OK;
	if (at < d->npeers && !replace)
		return errf(errmsg, SL_EEXISTS, "node %llu is pinned to UUID %s (%s)",
			    (unsigned long long)id, d->peers[at].uuid, d->peers_path);
	if (at == SL_DATADIR_MAX_PEERS)
		return errf(errmsg, SL_EBUSY, "%s: at most %d peers", d->peers_path,
			    SL_DATADIR_MAX_PEERS);
	char line[128];
	int len = snprintf(line, sizeof(line), "node_id=%llu uuid=%s\n", (unsigned long long)id,
			   uuid);
	int fd = open(d->peers_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: open: %s", d->peers_path, strerror(errno));
	struct stat st;
	bool created = fstat(fd, &st) == 0 && st.st_size == 0;
	bool ok = write(fd, line, (size_t)len) == len && fdatasync(fd) == 0;
	int e = errno;
	close(fd);
	if (ok && created) { /* the new file's entry, too */
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", d->peers_path);
		*strrchr(dir, '/') = '\0';
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ok = dfd >= 0 && fsync(dfd) == 0;
		e = errno;
		if (dfd >= 0)
			close(dfd);
	}
	if (!ok)
		return errf(errmsg, SL_ESTORAGE, "%s: %s", d->peers_path, strerror(e));
	d->peers[at].id = id;
	snprintf(d->peers[at].uuid, sizeof(d->peers[at].uuid), "%s", uuid);
	d->npeers += at == d->npeers;
	return SL_OK;
}

int sl_datadir_open(const char *dir, uint64_t node_id, struct sl_datadir *d, char *errmsg)
{
	memset(d, 0, sizeof(*d));
	d->lock_fd = -1;
	d->node_id = node_id;
	int rv = make_dirs(dir, errmsg);
	if (rv == SL_OK)
		rv = take_lock(d, dir, errmsg);
	if (rv != SL_OK)
		return rv;
	if (snprintf(d->path, sizeof(d->path), "%s/node.id", dir) >= (int)sizeof(d->path) ||
	    snprintf(d->peers_path, sizeof(d->peers_path), "%s/peers", dir) >=
		    (int)sizeof(d->peers_path))
		rv = errf(errmsg, SL_EINVALID_ARGUMENT, "data_dir is too long");
	if (rv == SL_OK)
		rv = read_identity(d, node_id, d->path, errmsg);
	if (rv == SL_ENOT_FOUND) {
		uuid_t u;
		uuid_generate_random(u);
		uuid_unparse_lower(u, d->uuid);
		rv = write_identity(d, d->path, errmsg);
		d->created = rv == SL_OK;
	}
	if (rv == SL_OK)
		rv = read_peers(d, errmsg);
	if (rv != SL_OK)
		sl_datadir_close(d);
	return rv;
}

int sl_datadir_set_cluster(struct sl_datadir *d, const char *cluster_id, char *errmsg)
{
	uuid_t u;
	if (strlen(cluster_id) != 36 || uuid_parse(cluster_id, u) != 0)
		return errf(errmsg, SL_EINVALID_ARGUMENT, "cluster id '%.64s' is no UUID", cluster_id);
	if (strcmp(d->cluster_id, cluster_id) == 0)
		return SL_OK;
	if (d->cluster_id[0] != '\0')
		return errf(errmsg, SL_EEXISTS,
			    "this data directory belongs to cluster %s, but the controller's cluster "
			    "is %s (%s): a node never moves between clusters; give it an empty "
			    "data directory to join this one",
			    d->cluster_id, cluster_id, d->path);
	snprintf(d->cluster_id, sizeof(d->cluster_id), "%s", cluster_id);
	int rv = write_identity(d, d->path, errmsg);
	if (rv != SL_OK)
		d->cluster_id[0] = '\0';
	return rv;
}

int sl_datadir_set_controller_group(struct sl_datadir *d, uint32_t group, char *errmsg)
{
	if (d->has_controller_group && d->controller_group == group)
		return SL_OK;
	struct sl_datadir old = *d;
	d->controller_group = group;
	d->has_controller_group = true;
	int rv = write_identity(d, d->path, errmsg);
	if (rv != SL_OK) {
		d->controller_group = old.controller_group;
		d->has_controller_group = old.has_controller_group;
	}
	return rv;
}

void sl_datadir_close(struct sl_datadir *d)
{
	if (d->lock_fd >= 0)
		close(d->lock_fd); /* releases the flock */
	d->lock_fd = -1;
}
