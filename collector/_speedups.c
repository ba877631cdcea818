/* The collector's per-line hot path in C: recvmmsg(2), request-line parsing, line splitting,
 * the crypto decoder's checks after decryption.
 *
 * Each function returns exactly what its pure-Python reference returns (collector.speedups
 * picks one or the other; tests/unit/test_speedups.py compares them on arbitrary input).
 * Where Python's semantics get intricate (int() of anything but plain ASCII digits, text
 * that is not one byte per character, bytes that are not UTF-8), the C hands the case to
 * the same Python machinery instead of re-implementing it: those inputs are rare, and
 * being identical matters more than being fast on them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef HAVE_LIBCRYPTO
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#endif

/* The kernel takes at most UIO_MAXIOV messages per recvmmsg call. */
#define MAX_MESSAGES 1024
#define CTIME_LEN 24

/* Set once by set_request_fields(): the NamedTuple class results are made of, and the
 * reference parser for text that is not one byte per character. */
static PyObject *request_fields = NULL;
static PyObject *request_reference = NULL;
static PyObject *int_1000 = NULL;
/* Method names the crypto checks call on the replay deque, made once. */
static PyObject *str_append = NULL;
static PyObject *str_popleft = NULL;

/* ---------------------------------------------------------------- recvmmsg */

/* One receive area per thread, kept between calls: the caller asks for up to
 * max_count * max_size bytes (256 * 64 KiB in the listener), far too much to allocate per
 * call, and only the pages the kernel writes into ever become resident. The message
 * headers live beside it (1024 of them would be too many for a thread's stack). Per thread
 * because the GIL is released while the kernel fills them. */
static __thread char *recv_area = NULL;
static __thread size_t recv_area_size = 0;
static __thread struct mmsghdr *recv_msgs = NULL;
static __thread struct iovec *recv_iovs = NULL;
static __thread struct sockaddr_storage *recv_addrs = NULL;
static __thread Py_ssize_t recv_slots = 0;
/* The layout the headers were last set up for. */
static __thread char *recv_layout_area = NULL;
static __thread Py_ssize_t recv_layout_count = 0;
static __thread Py_ssize_t recv_layout_size = 0;

static int
grow_receive_space(Py_ssize_t count, size_t bytes)
{
    if (recv_area_size < bytes) {
        char *area = realloc(recv_area, bytes);
        if (area == NULL)
            return -1;
        recv_area = area;
        recv_area_size = bytes;
    }
    if (recv_slots < count) {
        struct mmsghdr *msgs = realloc(recv_msgs, sizeof *msgs * (size_t)count);
        if (msgs == NULL)
            return -1;
        recv_msgs = msgs;
        struct iovec *iovs = realloc(recv_iovs, sizeof *iovs * (size_t)count);
        if (iovs == NULL)
            return -1;
        recv_iovs = iovs;
        struct sockaddr_storage *addrs = realloc(recv_addrs, sizeof *addrs * (size_t)count);
        if (addrs == NULL)
            return -1;
        recv_addrs = addrs;
        recv_slots = count;
    }
    return 0;
}

static PyObject *
host_string(const struct sockaddr_storage *addr)
{
    char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)addr;
        if (inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return PyUnicode_FromString(text);
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (in6->sin6_scope_id == 0) {
            if (inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) == NULL)
                return PyErr_SetFromErrno(PyExc_OSError);
            return PyUnicode_FromString(text);
        }
        /* A scoped (link-local) address: socket.recvfrom writes it as getnameinfo does,
         * with `%interface`. */
        int rc = getnameinfo((const struct sockaddr *)addr, sizeof *in6, text, sizeof text,
                             NULL, 0, NI_NUMERICHOST);
        if (rc != 0) {
            PyErr_Format(PyExc_OSError, "getnameinfo: %s", gai_strerror(rc));
            return NULL;
        }
        return PyUnicode_FromString(text);
    }
    errno = EAFNOSUPPORT;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *
speedups_recvmmsg(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "recvmmsg(fd, max_count, max_size)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    Py_ssize_t max_count = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_size = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (max_count < 1 || max_size < 1) {
        PyErr_SetString(PyExc_ValueError, "max_count and max_size must be at least 1");
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (max_count > MAX_MESSAGES)
        max_count = MAX_MESSAGES;
    if ((size_t)max_size > SIZE_MAX / MAX_MESSAGES) {
        PyErr_SetString(PyExc_ValueError, "max_size is too large");
        return NULL;
    }
    if (grow_receive_space(max_count, (size_t)max_count * (size_t)max_size) < 0)
        return PyErr_NoMemory();
    struct mmsghdr *msgs = recv_msgs;
    struct iovec *iovs = recv_iovs;
    struct sockaddr_storage *addrs = recv_addrs;
    /* The headers are laid out again only when the layout changed: a listener calls with
     * the same counts every time, often finding nothing (then this would be most of the
     * call). The kernel rewrites only msg_namelen, msg_len and msg_flags. */
    if (recv_layout_area != recv_area || recv_layout_count != max_count ||
        recv_layout_size != max_size) {
        for (Py_ssize_t i = 0; i < max_count; i++) {
            iovs[i].iov_base = recv_area + (size_t)i * (size_t)max_size;
            iovs[i].iov_len = (size_t)max_size;
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &addrs[i];
        }
        recv_layout_area = recv_area;
        recv_layout_count = max_count;
        recv_layout_size = max_size;
    }
    for (Py_ssize_t i = 0; i < max_count; i++)
        msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];

    int got;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        /* MSG_DONTWAIT: never block, even on a socket left in blocking mode. */
        got = recvmmsg((int)fd, msgs, (unsigned int)max_count, MSG_DONTWAIT, NULL);
        Py_END_ALLOW_THREADS
        if (got >= 0)
            break;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        /* As Python's own socket calls do (PEP 475): run signal handlers, then retry. */
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }

    PyObject *result = PyList_New(got);
    if (result == NULL)
        return NULL;
    /* A burst usually comes from one sender: its host string is made once and shared. */
    PyObject *last_host = NULL;
    const struct sockaddr_storage *last_addr = NULL;
    socklen_t last_len = 0;
    for (int i = 0; i < got; i++) {
        const struct sockaddr_storage *addr = &addrs[i];
        socklen_t len = msgs[i].msg_hdr.msg_namelen;
        PyObject *host;
        if (last_host != NULL && len == last_len && memcmp(addr, last_addr, len) == 0) {
            host = Py_NewRef(last_host);
        } else {
            host = host_string(addr);
            if (host == NULL)
                goto fail;
            last_host = host;
            last_addr = addr;
            last_len = len;
        }
        /* msg_len is what was copied: a longer datagram is already cut to max_size. */
        PyObject *payload = PyBytes_FromStringAndSize(iovs[i].iov_base, msgs[i].msg_len);
        if (payload == NULL) {
            Py_DECREF(host);
            goto fail;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(host);
            Py_DECREF(payload);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, payload);
        PyTuple_SET_ITEM(pair, 1, host);
        PyList_SET_ITEM(result, i, pair);
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

/* ------------------------------------------------------- parse_request_line */

static Py_ssize_t
find(const char *s, Py_ssize_t from, Py_ssize_t to, const char *needle, Py_ssize_t len)
{
    if (from < 0 || to - from < len)
        return -1;
    const char *hit = memmem(s + from, (size_t)(to - from), needle, (size_t)len);
    return hit == NULL ? -1 : hit - s;
}

/* int(line[a:b]) as Python computes it, or NULL with no exception set where int() raises
 * ValueError. Plain ASCII digits are read here; anything else (signs, spaces, `_`, other
 * scripts' digits, huge numbers) goes to int()'s own code. *small is set when the value
 * fits in a double exactly, so callers can do float arithmetic as Python would. */
static PyObject *
int_of(PyObject *line, const Py_UCS1 *s, Py_ssize_t a, Py_ssize_t b, long long *small)
{
    *small = -1;
    if (b > a && b - a <= 15) {
        long long value = 0;
        Py_ssize_t i = a;
        for (; i < b && s[i] >= '0' && s[i] <= '9'; i++)
            value = value * 10 + (s[i] - '0');
        if (i == b) {
            *small = value; /* below 10**15 < 2**53: exact as a double */
            return PyLong_FromLongLong(value);
        }
    }
    PyObject *text = PyUnicode_Substring(line, a, b < a ? a : b);
    if (text == NULL)
        return NULL;
    PyObject *value = PyLong_FromUnicodeObject(text, 10);
    Py_DECREF(text);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_ValueError))
        PyErr_Clear();
    return value;
}

static int
equals(const Py_UCS1 *s, Py_ssize_t a, Py_ssize_t b, const char *word)
{
    size_t len = strlen(word);
    return (size_t)(b - a) == len && memcmp(s + a, word, len) == 0;
}

static PyObject *
parse_request_line(PyObject *module, PyObject *line)
{
    (void)module;
    if (request_fields == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_request_fields() was not called");
        return NULL;
    }
    if (!PyUnicode_Check(line)) {
        PyErr_SetString(PyExc_TypeError, "parse_request_line() takes a str");
        return NULL;
    }
    /* Text with characters past U+00FF (not one byte each): the reference parser. */
    if (PyUnicode_KIND(line) != PyUnicode_1BYTE_KIND)
        return PyObject_CallOneArg(request_reference, line);
    const Py_UCS1 *u = PyUnicode_1BYTE_DATA(line);
    const char *s = (const char *)u;
    Py_ssize_t n = PyUnicode_GET_LENGTH(line);

    Py_ssize_t start = find(s, 0, n, "[pid: ", 6);
    if (start < 0)
        Py_RETURN_NONE;
    Py_ssize_t bar = find(s, start, n, "|", 1);
    if (bar < 0)
        Py_RETURN_NONE;
    Py_ssize_t arrow = find(s, bar, n, " => generated ", 14);
    if (arrow < 0)
        Py_RETURN_NONE;
    Py_ssize_t vars_end = find(s, bar, arrow, " bytes} [", 9);
    if (vars_end < 0)
        Py_RETURN_NONE;
    Py_ssize_t request_start = vars_end + 9 + CTIME_LEN;
    if (request_start + 2 > n || s[request_start] != ']' || s[request_start + 1] != ' ')
        Py_RETURN_NONE;
    /* method, _, path = line[request_start + 2:arrow].partition(" ") */
    Py_ssize_t method_at = request_start + 2;
    if (method_at >= arrow)
        Py_RETURN_NONE; /* the method would be empty */
    Py_ssize_t method_end = method_at;
    while (method_end < arrow && s[method_end] != ' ')
        method_end++;
    Py_ssize_t path_at = method_end < arrow ? method_end + 1 : arrow;

    /* parts = line[arrow + 14:].split(" ", 9): the first nine fields' bounds. */
    Py_ssize_t field_at[9], field_end[9];
    int fields = 0;
    Py_ssize_t p = arrow + 14;
    while (fields < 9) {
        Py_ssize_t space = p;
        while (space < n && s[space] != ' ')
            space++;
        field_at[fields] = p;
        field_end[fields] = space;
        fields++;
        if (space >= n)
            break;
        p = space + 1;
    }
    /* The reference converts pid, size, elapsed, then status, and any failure (ValueError,
     * IndexError) means None, so the order of checks below does not change the result. */
    if (fields < 7)
        Py_RETURN_NONE;
    int via = equals(u, field_at[5], field_end[5], "via");
    int status_at = via ? 8 : 6;
    if (status_at >= fields)
        Py_RETURN_NONE;
    if (!equals(u, field_at[1], field_end[1], "bytes") || !equals(u, field_at[2], field_end[2], "in"))
        Py_RETURN_NONE;
    int micros = equals(u, field_at[4], field_end[4], "micros");
    if (!micros && !equals(u, field_at[4], field_end[4], "msecs"))
        Py_RETURN_NONE;
    if (method_end == method_at)
        Py_RETURN_NONE;

    long long small;
    PyObject *pid = NULL, *size = NULL, *elapsed = NULL, *status = NULL, *msecs = NULL;
    PyObject *method = NULL, *path = NULL, *items = NULL, *result = NULL;
    pid = int_of(line, u, start + 6, bar, &small);
    if (pid == NULL)
        goto done;
    size = int_of(line, u, field_at[0], field_end[0], &small);
    if (size == NULL)
        goto done;
    Py_ssize_t status_end = field_end[status_at];
    while (status_end > field_at[status_at] && s[status_end - 1] == ')')
        status_end--;
    status = int_of(line, u, field_at[status_at], status_end, &small);
    if (status == NULL)
        goto done;
    elapsed = int_of(line, u, field_at[3], field_end[3], &small);
    if (elapsed == NULL)
        goto done;
    /* As Python: int / int and float(int), which raise OverflowError past a double. */
    if (small >= 0)
        msecs = PyFloat_FromDouble(micros ? (double)small / 1000.0 : (double)small);
    else
        msecs = micros ? PyNumber_TrueDivide(elapsed, int_1000) : PyNumber_Float(elapsed);
    if (msecs == NULL)
        goto done;
    method = PyUnicode_Substring(line, method_at, method_end);
    if (method == NULL)
        goto done;
    path = PyUnicode_Substring(line, path_at, arrow);
    if (path == NULL)
        goto done;
    items = PyTuple_Pack(6, method, path, status, msecs, size, pid);
    if (items == NULL)
        goto done;
    /* tuple.__new__(RequestFields, items), as NamedTuple._make does, without running the
     * class's Python __new__. */
    PyObject *new_args = PyTuple_Pack(1, items);
    if (new_args == NULL)
        goto done;
    result = PyTuple_Type.tp_new((PyTypeObject *)request_fields, new_args, NULL);
    Py_DECREF(new_args);
done:
    Py_XDECREF(pid);
    Py_XDECREF(size);
    Py_XDECREF(elapsed);
    Py_XDECREF(status);
    Py_XDECREF(msecs);
    Py_XDECREF(method);
    Py_XDECREF(path);
    Py_XDECREF(items);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

static PyObject *
set_request_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyType_Check(args[0]) ||
        !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "set_request_fields(tuple subclass, reference parser)");
        return NULL;
    }
    Py_XSETREF(request_fields, Py_NewRef(args[0]));
    Py_XSETREF(request_reference, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* -------------------------------------------------------------- split_lines */

/* The payload is not UTF-8: every non-empty line on its own, `\0` written as `\x00`,
 * decoded strictly where it can be and with backslash escapes (counted) where not. */
static PyObject *
split_escaping(const char *s, Py_ssize_t n, long *escaped_out)
{
    PyObject *lines = PyList_New(0);
    if (lines == NULL)
        return NULL;
    long escaped = 0;
    Py_ssize_t p = 0;
    while (p <= n) {
        const char *nl = memchr(s + p, '\n', (size_t)(n - p));
        Py_ssize_t end = nl == NULL ? n : nl - s;
        Py_ssize_t stop = end;
        while (stop > p && s[stop - 1] == '\r')
            stop--;
        if (stop > p) {
            const char *raw = s + p;
            Py_ssize_t len = stop - p;
            char *clean = NULL;
            if (memchr(raw, '\0', (size_t)len) != NULL) {
                clean = PyMem_Malloc((size_t)len * 4);
                if (clean == NULL) {
                    Py_DECREF(lines);
                    return PyErr_NoMemory();
                }
                Py_ssize_t out = 0;
                for (Py_ssize_t i = 0; i < len; i++) {
                    if (raw[i] == '\0') {
                        memcpy(clean + out, "\\x00", 4);
                        out += 4;
                    } else {
                        clean[out++] = raw[i];
                    }
                }
                raw = clean;
                len = out;
            }
            PyObject *line = PyUnicode_DecodeUTF8(raw, len, NULL);
            if (line == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                line = PyUnicode_DecodeUTF8(raw, len, "backslashreplace");
                escaped++;
            }
            PyMem_Free(clean);
            if (line == NULL || PyList_Append(lines, line) < 0) {
                Py_XDECREF(line);
                Py_DECREF(lines);
                return NULL;
            }
            Py_DECREF(line);
        }
        p = end + 1;
    }
    *escaped_out = escaped;
    return lines;
}

/* split_lines over a span of memory: the crypto decoder splits part of a plaintext it never
 * makes a bytes object of. */
static PyObject *
split_list(const char *s, Py_ssize_t n, long *escaped)
{
    PyObject *lines = PyList_New(0);
    if (lines == NULL)
        return NULL;
    /* Valid UTF-8 splits the same as bytes or as text (`\n` and `\r` are single bytes that
     * never occur inside a multi-byte character), so each line is decoded on its own. */
    Py_ssize_t p = 0;
    while (p < n) {
        const char *nl = memchr(s + p, '\n', (size_t)(n - p));
        Py_ssize_t end = nl == NULL ? n : nl - s;
        Py_ssize_t stop = end;
        while (stop > p && s[stop - 1] == '\r')
            stop--;
        if (stop > p) {
            PyObject *line = PyUnicode_DecodeUTF8(s + p, stop - p, NULL);
            if (line == NULL) {
                Py_DECREF(lines);
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                    return NULL;
                PyErr_Clear();
                return split_escaping(s, n, escaped);
            }
            if (PyList_Append(lines, line) < 0) {
                Py_DECREF(line);
                Py_DECREF(lines);
                return NULL;
            }
            Py_DECREF(line);
        }
        p = end + 1;
    }
    *escaped = 0;
    return lines;
}

/* The same as a (lines, escaped) tuple, as split_lines returns it. */
static PyObject *
split_span(const char *s, Py_ssize_t n)
{
    long escaped = 0;
    PyObject *lines = split_list(s, n, &escaped);
    return lines == NULL ? NULL : Py_BuildValue("(Nl)", lines, escaped);
}

static PyObject *
split_lines(PyObject *module, PyObject *payload)
{
    (void)module;
    if (!PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "split_lines() takes bytes");
        return NULL;
    }
    return split_span(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
}

/* -------------------------------------------------------------- crypto_open */

/* Lines (collector.decode.result), a slots dataclass, is made per datagram: calling it runs
 * its Python __init__, which only stores the fields. Where the class is as expected (each
 * field a plain object slot, no __post_init__, no __setattr__ of its own, instances made by
 * object.__new__), the fields are stored into a new instance directly, the two fields with
 * defaults from one instance made by the class itself. Otherwise the class is called. */
static const char *const lines_fields[] = {"lines", "app", "source", "emitted_at", "escaped",
                                            "markers", "lost"};
#define LINES_FIELDS 7
static PyTypeObject *lines_type = NULL;      /* the class checked, or NULL */
static int lines_direct = 0;                 /* whether it may be filled directly */
static Py_ssize_t lines_offsets[LINES_FIELDS];
static PyObject *lines_defaults[LINES_FIELDS]; /* markers and lost; the rest unused */

static int
lines_learn(PyObject *cls)
{
    Py_CLEAR(lines_type);
    for (int i = 0; i < LINES_FIELDS; i++)
        Py_CLEAR(lines_defaults[i]);
    lines_direct = 0;
    if (!PyType_Check(cls))
        return 0;
    PyTypeObject *type = (PyTypeObject *)cls;
    lines_type = (PyTypeObject *)Py_NewRef(cls);
    if (type->tp_new != PyBaseObject_Type.tp_new ||
        type->tp_setattro != PyBaseObject_Type.tp_setattro ||
        type->tp_itemsize != 0 || PyObject_HasAttrString(cls, "__post_init__"))
        return 0;
    for (int i = 0; i < LINES_FIELDS; i++) {
        PyObject *descr = PyObject_GetAttrString(cls, lines_fields[i]);
        if (descr == NULL) {
            PyErr_Clear();
            return 0;
        }
        int plain = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
            ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
            ((PyMemberDescrObject *)descr)->d_member->flags == 0 &&
            ((PyMemberDescrObject *)descr)->d_common.d_type == type;
        if (plain)
            lines_offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!plain)
            return 0;
    }
    PyObject *none_list = PyList_New(0);
    if (none_list == NULL)
        return -1;
    PyObject *sample = PyObject_CallOneArg(cls, none_list);
    Py_DECREF(none_list);
    if (sample == NULL)
        return -1;
    int ok = Py_IS_TYPE(sample, type);
    for (int i = 5; ok && i < LINES_FIELDS; i++) {
        PyObject *value = *(PyObject **)((char *)sample + lines_offsets[i]);
        if (value == NULL)
            ok = 0;
        else
            lines_defaults[i] = Py_NewRef(value);
    }
    Py_DECREF(sample);
    lines_direct = ok;
    return 0;
}

/* cls(lines, app, source, emitted_at, escaped), as a new reference. */
static PyObject *
make_lines(PyObject *cls, PyObject *const *fields)
{
    if ((PyTypeObject *)cls != lines_type && lines_learn(cls) < 0)
        return NULL;
    if (!lines_direct)
        return PyObject_Vectorcall(cls, fields, 5, NULL);
    PyTypeObject *type = lines_type;
    PyObject *made = type->tp_alloc(type, 0);
    if (made == NULL)
        return NULL;
    for (int i = 0; i < LINES_FIELDS; i++)
        *(PyObject **)((char *)made + lines_offsets[i]) =
            Py_NewRef(i < 5 ? fields[i] : lines_defaults[i]);
    return made;
}

/* The longest timestamp logcrypto's `<micros> ` head may have (collector.decode.crypto). */
#define MAX_TIMESTAMP_DIGITS 20
#define REPLAY_TAG 16

/* Is the datagram a replay? The same steps, on the same objects, as the pure reference:
 * seen (a set of tags), order (a deque of them, oldest first), window (its bound). */
/* State kept through one crypto_batch call: the deque's bound methods, and the last prefix
 * found in the cache, so a run of one sender's datagrams skips making the lookup's bytes.
 * The cache changes only in the prefix lookup (the decoder's _prefix), which clears it. */
typedef struct {
    PyObject *append, *popleft;   /* bound methods of the replay deque, or NULL */
    PyObject *head, *known;       /* the last prefix hit: its bytes and (app, source) */
} open_memo;

static void
memo_forget(open_memo *memo)
{
    Py_CLEAR(memo->head);
    Py_CLEAR(memo->known);
}

static int
is_replay(PyObject *data, PyObject *seen, PyObject *order, Py_ssize_t window,
          open_memo *memo)
{
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    PyObject *tag = n > REPLAY_TAG
        ? PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + n - REPLAY_TAG, REPLAY_TAG)
        : Py_NewRef(data);
    if (tag == NULL)
        return -1;
    int known = PySet_Contains(seen, tag);
    if (known != 0) {
        Py_DECREF(tag);
        return known;
    }
    if (PySet_Add(seen, tag) < 0) {
        Py_DECREF(tag);
        return -1;
    }
    PyObject *appended = memo != NULL && memo->append != NULL
        ? PyObject_CallOneArg(memo->append, tag)
        : PyObject_CallMethodOneArg(order, str_append, tag);
    Py_DECREF(tag);
    if (appended == NULL)
        return -1;
    Py_DECREF(appended);
    Py_ssize_t held = PyObject_Size(order);
    if (held < 0)
        return -1;
    if (held > window) {
        PyObject *oldest = memo != NULL && memo->popleft != NULL
            ? PyObject_CallNoArgs(memo->popleft)
            : PyObject_CallMethodNoArgs(order, str_popleft);
        if (oldest == NULL)
            return -1;
        int gone = PySet_Discard(seen, oldest);
        Py_DECREF(oldest);
        if (gone < 0)
            return -1;
    }
    return 0;
}

/* value < bound (op Py_LT) or value > bound (Py_GT), as Python compares a float with
 * whatever the bound is. */
static int
beyond(double value, PyObject *bound, int op)
{
    if (PyFloat_CheckExact(bound)) {
        double b = PyFloat_AS_DOUBLE(bound);
        return op == Py_LT ? value < b : value > b;
    }
    PyObject *boxed = PyFloat_FromDouble(value);
    if (boxed == NULL)
        return -1;
    int result = PyObject_RichCompareBool(boxed, bound, op);
    Py_DECREF(boxed);
    return result;
}

static PyObject *open_plain(const char *plain, Py_ssize_t plain_len, PyObject *data,
                           PyObject *low, PyObject *high, PyObject *app, PyObject *state,
                           void *memo);

/* crypto_open(raw, block, data, low, high, app, state): everything the crypto decoder does
 * to one datagram after the cipher ran under one key; see collector.speedups for the pure
 * reference, which this follows step by step. */
static PyObject *
crypto_open(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[2]) ||
        !PyTuple_Check(args[6]) || PyTuple_GET_SIZE(args[6]) != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "crypto_open(raw, block, data, low, high, app, state)");
        return NULL;
    }
    PyObject *raw = args[0], *data = args[2], *low = args[3], *high = args[4];
    PyObject *app = args[5], *state = args[6];
    Py_ssize_t block = PyLong_AsSsize_t(args[1]);
    if (block == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *r = (const unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw);

    /* PKCS#7 padding; the first block is the output of the IV block, thrown away. */
    if (n < 1)
        return PyLong_FromLong(0);
    Py_ssize_t pad = r[n - 1];
    if (pad == 0 || pad > block || pad > n)
        return PyLong_FromLong(0);
    for (Py_ssize_t i = n - pad; i < n; i++)
        if (r[i] != pad)
            return PyLong_FromLong(0);
    const char *plain = (const char *)r + (block < n ? block : n);
    Py_ssize_t plain_len = n - pad - block;
    if (plain_len < 0)
        plain_len = 0;
    return open_plain(plain, plain_len, data, low, high, app, state, NULL);
}

/* What crypto_open does once the padding is off: `plain` is the plaintext without it.
 * Returns 1 (no timestamp), a drop reason or the Lines, as a new reference. */
static PyObject *
open_plain(const char *plain, Py_ssize_t plain_len, PyObject *data, PyObject *low,
           PyObject *high, PyObject *app, PyObject *state, void *memo_arg)
{
    open_memo *memo = memo_arg;
    /* `<micros> <rest>` */
    Py_ssize_t limit = plain_len < MAX_TIMESTAMP_DIGITS + 1 ? plain_len : MAX_TIMESTAMP_DIGITS + 1;
    const char *sp = memchr(plain, ' ', (size_t)limit);
    if (sp == NULL || sp == plain)
        return PyLong_FromLong(1);
    Py_ssize_t digits = sp - plain;
    for (Py_ssize_t i = 0; i < digits; i++)
        if (plain[i] < '0' || plain[i] > '9')
            return PyLong_FromLong(1);
    double micros;
    if (digits <= 15) {
        long long value = 0;
        for (Py_ssize_t i = 0; i < digits; i++)
            value = value * 10 + (plain[i] - '0');
        micros = (double)value; /* below 10**15 < 2**53: exact */
    } else {
        /* As Python's int / float: the int rounded to a double first. */
        char text[MAX_TIMESTAMP_DIGITS + 1];
        memcpy(text, plain, (size_t)digits);
        text[digits] = '\0';
        PyObject *big = PyLong_FromString(text, NULL, 10);
        if (big == NULL)
            return NULL;
        micros = PyLong_AsDouble(big);
        Py_DECREF(big);
        if (micros == -1.0 && PyErr_Occurred())
            return NULL;
    }
    double emitted = micros / 1e6;
    const char *body = sp + 1;
    Py_ssize_t body_len = plain + plain_len - body;

    int check = beyond(emitted, low, Py_LT);
    if (check < 0)
        return NULL;
    if (check)
        return PyUnicode_FromString("stale_timestamp");
    check = beyond(emitted, high, Py_GT);
    if (check < 0)
        return NULL;
    if (check)
        return PyUnicode_FromString("future_timestamp");
    if (memchr(body, '\0', (size_t)body_len) != NULL)
        return PyUnicode_FromString("implausible_text");

    PyObject *seen = PyTuple_GET_ITEM(state, 0), *order = PyTuple_GET_ITEM(state, 1);
    PyObject *window = PyTuple_GET_ITEM(state, 2), *prefixes = PyTuple_GET_ITEM(state, 3);
    PyObject *resolve = PyTuple_GET_ITEM(state, 4), *lines_class = PyTuple_GET_ITEM(state, 5);
    if (!PyAnySet_Check(seen) || !PyDict_Check(prefixes)) {
        PyErr_SetString(PyExc_TypeError, "crypto_open: state is (set, deque, int, dict, "
                                         "resolve, Lines)");
        return NULL;
    }
    int replay_on = PyObject_IsTrue(window);
    if (replay_on < 0)
        return NULL;
    if (replay_on) {
        int overflow = 0;
        long long bound = PyLong_AsLongLongAndOverflow(window, &overflow);
        if (bound == -1 && PyErr_Occurred())
            return NULL;
        Py_ssize_t w = overflow > 0 || bound > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                     : overflow < 0 || bound < -1 ? -1 : (Py_ssize_t)bound;
        int replay = is_replay(data, seen, order, w, memo);
        if (replay < 0)
            return NULL;
        if (replay)
            return PyUnicode_FromString("replay");
    }

    /* The `APP/SOURCE ` prefix: a cached first word, or the reference's lookup. */
    PyObject *source = Py_None;
    Py_INCREF(app);
    Py_INCREF(source);
    const char *space = memchr(body, ' ', (size_t)body_len);
    if (space != NULL && space > body) {
        Py_ssize_t skip = space - body + 1;
        PyObject *known; /* borrowed */
        if (memo != NULL && memo->head != NULL && PyBytes_GET_SIZE(memo->head) == skip &&
            memcmp(PyBytes_AS_STRING(memo->head), body, (size_t)skip) == 0) {
            known = memo->known;
        } else {
            PyObject *head = PyBytes_FromStringAndSize(body, skip);
            if (head == NULL)
                goto fail;
            known = PyDict_GetItemWithError(prefixes, head);
            if (known == NULL && PyErr_Occurred()) {
                Py_DECREF(head);
                goto fail;
            }
            if (memo != NULL && known != NULL) {
                Py_XSETREF(memo->known, Py_NewRef(known));
                Py_XSETREF(memo->head, head);
            } else {
                Py_DECREF(head);
            }
        }
        if (known != NULL) {
            if (!PyTuple_Check(known) || PyTuple_GET_SIZE(known) != 2) {
                PyErr_SetString(PyExc_TypeError, "crypto_open: prefixes hold (app, source)");
                goto fail;
            }
            Py_SETREF(app, Py_NewRef(PyTuple_GET_ITEM(known, 0)));
            Py_SETREF(source, Py_NewRef(PyTuple_GET_ITEM(known, 1)));
            body += skip;
            body_len -= skip;
        } else {
            PyObject *whole = PyBytes_FromStringAndSize(body, body_len);
            if (whole == NULL)
                goto fail;
            /* It may change the cache (a new prefix, or all cleared at the bound). */
            if (memo != NULL)
                memo_forget(memo);
            PyObject *named = PyObject_CallOneArg(resolve, whole);
            Py_DECREF(whole);
            if (named == NULL)
                goto fail;
            if (named != Py_None) {
                Py_ssize_t cut;
                if (!PyTuple_Check(named) || PyTuple_GET_SIZE(named) != 3 ||
                    ((cut = PyLong_AsSsize_t(PyTuple_GET_ITEM(named, 2))) == -1 &&
                     PyErr_Occurred()) || cut < 0 || cut > body_len) {
                    Py_DECREF(named);
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_ValueError,
                                        "crypto_open: resolve gives (app, source, length)");
                    goto fail;
                }
                Py_SETREF(app, Py_NewRef(PyTuple_GET_ITEM(named, 0)));
                Py_SETREF(source, Py_NewRef(PyTuple_GET_ITEM(named, 1)));
                body += cut;
                body_len -= cut;
            }
            Py_DECREF(named);
        }
    }

    long escaped = 0;
    PyObject *lines = split_list(body, body_len, &escaped);
    if (lines == NULL)
        goto fail;
    if (PyList_GET_SIZE(lines) == 0) {
        Py_DECREF(lines);
        Py_DECREF(app);
        Py_DECREF(source);
        return PyUnicode_FromString("empty");
    }
    PyObject *at = PyFloat_FromDouble(emitted);
    PyObject *count = PyLong_FromLong(escaped);
    PyObject *result = NULL;
    if (at != NULL && count != NULL) {
        PyObject *fields[5] = {lines, app, source, at, count};
        result = make_lines(lines_class, fields);
    }
    Py_XDECREF(at);
    Py_XDECREF(count);
    Py_DECREF(lines);
    Py_DECREF(app);
    Py_DECREF(source);
    return result;
fail:
    Py_DECREF(app);
    Py_DECREF(source);
    return NULL;
}


/* ------------------------------------------------------------- crypto_batch */

#ifdef HAVE_LIBCRYPTO
/* Decryption by libcrypto itself, a whole wake-up's datagrams in one call: the per-sender
 * key choice, the size checks, the cipher, the padding and everything crypto_open does.
 *
 * Each key is one long-lived CBC context, never finalized, padding off. CBC decrypts block
 * i as D(C[i]) ^ C[i-1]: a context fed datagram after datagram chains a datagram's first
 * block to the last ciphertext block it was fed before (kept in `chain`), not to the IV, so
 * that one block is corrected by `chain ^ iv` afterwards. One EVP call per datagram and no
 * re-initialisation. */

#define CIPHER_CAPSULE "collector._speedups.cipher"

typedef struct {
    EVP_CIPHER_CTX *ctx;
    int block;
    unsigned char iv[EVP_MAX_BLOCK_LENGTH];
    unsigned char chain[EVP_MAX_BLOCK_LENGTH];
} native_key;

/* A library context of our own, with the default and (for Blowfish) the legacy provider:
 * the process's default context and its configuration are left alone. */
static OSSL_LIB_CTX *crypto_libctx = NULL;

static void
cipher_free(PyObject *capsule)
{
    native_key *k = PyCapsule_GetPointer(capsule, CIPHER_CAPSULE);
    if (k == NULL) {
        PyErr_Clear();
        return;
    }
    EVP_CIPHER_CTX_free(k->ctx);
    OPENSSL_cleanse(k, sizeof *k);
    PyMem_Free(k);
}

/* crypto_cipher(algo, key, iv): a CBC decryption context for crypto_batch, or None where
 * this libcrypto does not offer the algorithm (the caller keeps its own path then). The key
 * is copied into libcrypto's context only; no error message carries it. */
static PyObject *
crypto_cipher(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyUnicode_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "crypto_cipher(algo, key, iv)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL)
        return NULL;
    if (crypto_libctx == NULL) {
        OSSL_LIB_CTX *made = OSSL_LIB_CTX_new();
        if (made == NULL || OSSL_PROVIDER_load(made, "default") == NULL) {
            OSSL_LIB_CTX_free(made);
            ERR_clear_error();
            Py_RETURN_NONE;
        }
        /* Missing on some systems: Blowfish is then not offered, AES still is. */
        if (OSSL_PROVIDER_load(made, "legacy") == NULL)
            ERR_clear_error();
        crypto_libctx = made;
    }
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(crypto_libctx, name, NULL);
    if (cipher == NULL) {
        ERR_clear_error();
        Py_RETURN_NONE;
    }
    int block = EVP_CIPHER_get_block_size(cipher);
    if (EVP_CIPHER_get_mode(cipher) != EVP_CIPH_CBC_MODE || block < 1 ||
        block > EVP_MAX_BLOCK_LENGTH || EVP_CIPHER_get_iv_length(cipher) != block ||
        PyBytes_GET_SIZE(args[2]) != block ||
        PyBytes_GET_SIZE(args[1]) != EVP_CIPHER_get_key_length(cipher)) {
        EVP_CIPHER_free(cipher);
        Py_RETURN_NONE;
    }
    native_key *k = PyMem_Calloc(1, sizeof *k);
    if (k == NULL) {
        EVP_CIPHER_free(cipher);
        return PyErr_NoMemory();
    }
    k->block = block;
    memcpy(k->iv, PyBytes_AS_STRING(args[2]), (size_t)block);
    memcpy(k->chain, k->iv, (size_t)block);
    k->ctx = EVP_CIPHER_CTX_new();
    int ok = k->ctx != NULL &&
        EVP_DecryptInit_ex2(k->ctx, cipher, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                            k->iv, NULL) &&
        EVP_CIPHER_CTX_set_padding(k->ctx, 0);
    EVP_CIPHER_free(cipher);
    if (!ok) {
        ERR_clear_error();
        EVP_CIPHER_CTX_free(k->ctx);
        OPENSSL_cleanse(k, sizeof *k);
        PyMem_Free(k);
        Py_RETURN_NONE;
    }
    PyObject *capsule = PyCapsule_New(k, CIPHER_CAPSULE, cipher_free);
    if (capsule == NULL) {
        EVP_CIPHER_CTX_free(k->ctx);
        OPENSSL_cleanse(k, sizeof *k);
        PyMem_Free(k);
    }
    return capsule;
}

/* Decrypt whole blocks `in` (n bytes) into `out` as a fresh context with the IV would. */
static int
key_decrypt(native_key *k, const unsigned char *in, Py_ssize_t n, unsigned char *out)
{
    int got = 0;
    if (n > INT_MAX || !EVP_DecryptUpdate(k->ctx, out, &got, in, (int)n) || got != n) {
        ERR_clear_error();
        /* Whatever the context holds now, start it again from the IV. */
        EVP_DecryptInit_ex2(k->ctx, NULL, NULL, k->iv, NULL);
        ERR_clear_error();
        memcpy(k->chain, k->iv, (size_t)k->block);
        PyErr_SetString(PyExc_RuntimeError, "libcrypto failed to decrypt a datagram");
        return -1;
    }
    for (int i = 0; i < k->block; i++)
        out[i] ^= k->chain[i] ^ k->iv[i];
    memcpy(k->chain, in + n - k->block, (size_t)k->block);
    return 0;
}

typedef struct {
    native_key *key;
    PyObject *app; /* borrowed from the keys tuple */
} batch_key;

/* Reasons a datagram is dropped for before or between the keys, made once. */
static PyObject *reason_oversize = NULL, *reason_bad_length = NULL,
                *reason_bad_padding = NULL, *reason_bad_timestamp = NULL,
                *reason_internal_error = NULL;

/* One key's try: 0 (bad padding), 1 (no timestamp), a drop reason or Lines; new ref. */
static PyObject *
try_key(batch_key *bk, PyObject *data, unsigned char *buf, PyObject *low, PyObject *high,
        PyObject *state, open_memo *memo)
{
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    int block = bk->key->block;
    if (key_decrypt(bk->key, (const unsigned char *)PyBytes_AS_STRING(data), n, buf) < 0)
        return NULL;
    Py_ssize_t pad = buf[n - 1];
    if (pad == 0 || pad > block)
        return PyLong_FromLong(0);
    for (Py_ssize_t i = n - pad; i < n; i++)
        if (buf[i] != pad)
            return PyLong_FromLong(0);
    return open_plain((const char *)buf, n - pad, data, low, high, bk->app, state, memo);
}

/* CryptoDecoder.decode for one datagram: a drop reason or the Lines (new ref). */
static PyObject *
decode_one(PyObject *data, PyObject *host, batch_key *keys, Py_ssize_t count, int block_min,
           PyObject *by_peer, Py_ssize_t max_senders, unsigned char *buf, PyObject *low,
           PyObject *high, PyObject *state, open_memo *memo)
{
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size == 0 || size % block_min)
        return Py_NewRef(reason_bad_length);
    Py_ssize_t first = 0;
    PyObject *cached = PyDict_GetItemWithError(by_peer, host); /* borrowed */
    if (cached == NULL && PyErr_Occurred())
        return NULL;
    if (cached != NULL) {
        first = PyLong_AsSsize_t(cached);
        if (first == -1 && PyErr_Occurred())
            return NULL;
        if (first < 0)
            first += count;
        if (first < 0 || first >= count) {
            PyErr_SetString(PyExc_IndexError, "crypto_batch: a sender's key out of range");
            return NULL;
        }
    }
    /* 0: no key had valid padding; 1: one had, but no timestamp followed. */
    long outcome = 0;
    if (size % keys[first].key->block == 0) {
        PyObject *opened = try_key(&keys[first], data, buf, low, high, state, memo);
        if (opened == NULL || !PyLong_CheckExact(opened))
            return opened;
        outcome = PyLong_AsLong(opened);
        Py_DECREF(opened);
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        if (index == first || size % keys[index].key->block)
            continue;
        PyObject *opened = try_key(&keys[index], data, buf, low, high, state, memo);
        if (opened == NULL)
            return NULL;
        if (PyLong_CheckExact(opened)) {
            outcome |= PyLong_AsLong(opened);
            Py_DECREF(opened);
            continue;
        }
        if (PyDict_GET_SIZE(by_peer) >= max_senders)
            PyDict_Clear(by_peer);
        PyObject *number = PyLong_FromSsize_t(index);
        if (number == NULL || PyDict_SetItem(by_peer, host, number) < 0) {
            Py_XDECREF(number);
            Py_DECREF(opened);
            return NULL;
        }
        Py_DECREF(number);
        return opened;
    }
    return Py_NewRef(outcome == 1 ? reason_bad_timestamp : reason_bad_padding);
}

/* The raised exception as one object, traceback attached; the error indicator cleared. */
static PyObject *
take_exception(void)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value != NULL ? value : Py_NewRef(Py_None);
}

/* crypto_batch(batch, low, high, max_datagram, keys, by_peer, max_senders, state, catch):
 * see collector.decode.crypto.CryptoDecoder.decode_many, whose pure path this follows. */
static PyObject *
crypto_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 9 || !PyTuple_Check(args[4]) || !PyDict_Check(args[5]) ||
        !PyTuple_Check(args[7]) || PyTuple_GET_SIZE(args[7]) != 6) {
        PyErr_SetString(PyExc_TypeError, "crypto_batch(batch, low, high, max_datagram, keys, "
                                         "by_peer, max_senders, state, catch)");
        return NULL;
    }
    PyObject *low = args[1], *high = args[2], *key_items = args[4], *by_peer = args[5];
    PyObject *state = args[7];
    Py_ssize_t max_datagram = PyLong_AsSsize_t(args[3]);
    if (max_datagram == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t max_senders = PyLong_AsSsize_t(args[6]);
    if (max_senders == -1 && PyErr_Occurred())
        return NULL;
    int catch = PyObject_IsTrue(args[8]);
    if (catch < 0)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(key_items);
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "crypto_batch needs at least one key");
        return NULL;
    }
    batch_key *keys = PyMem_Calloc((size_t)count, sizeof *keys);
    if (keys == NULL)
        return PyErr_NoMemory();
    int block_min = EVP_MAX_BLOCK_LENGTH;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(key_items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            (keys[i].key = PyCapsule_GetPointer(PyTuple_GET_ITEM(item, 0),
                                                CIPHER_CAPSULE)) == NULL) {
            PyMem_Free(keys);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "crypto_batch: keys hold (cipher, app)");
            return NULL;
        }
        keys[i].app = PyTuple_GET_ITEM(item, 1);
        if (keys[i].key->block < block_min)
            block_min = keys[i].key->block;
    }
    PyObject *seq = PySequence_Fast(args[0], "crypto_batch: the batch is a sequence");
    if (seq == NULL) {
        PyMem_Free(keys);
        return NULL;
    }
    open_memo memo = {NULL, NULL, NULL, NULL};
    PyObject *order = PyTuple_GET_ITEM(state, 1);
    memo.append = PyObject_GetAttr(order, str_append);
    memo.popleft = memo.append == NULL ? NULL : PyObject_GetAttr(order, str_popleft);
    if (memo.popleft == NULL) {
        /* Not a deque: crypto_open's own calls will say so, per datagram. */
        PyErr_Clear();
        Py_CLEAR(memo.append);
    }
    PyObject *decoded = PyList_New(0), *drops = PyList_New(0), *result = NULL;
    unsigned char *buf = NULL;
    Py_ssize_t buf_size = 0;
    if (decoded == NULL || drops == NULL)
        goto done;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *item = items[i];
        PyObject *opened = NULL, *host = Py_None;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
            if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2)
                host = PyTuple_GET_ITEM(item, 1);
            PyErr_SetString(PyExc_TypeError, "crypto_batch: a datagram is (bytes, host)");
        } else {
            PyObject *data = PyTuple_GET_ITEM(item, 0);
            Py_ssize_t size = PyBytes_GET_SIZE(data);
            host = PyTuple_GET_ITEM(item, 1);
            if (size > max_datagram) {
                opened = Py_NewRef(reason_oversize);
            } else {
                if (size > buf_size) {
                    Py_ssize_t want = size < 2048 ? 2048 : size;
                    unsigned char *grown = PyMem_Realloc(buf, (size_t)want);
                    if (grown == NULL) {
                        PyErr_NoMemory();
                        goto failed;
                    }
                    buf = grown;
                    buf_size = want;
                }
                opened = decode_one(data, host, keys, count, block_min, by_peer,
                                    max_senders, buf, low, high, state, &memo);
            }
        }
    failed:
        if (opened == NULL) {
            if (!catch)
                goto done;
            PyObject *error = take_exception();
            PyObject *drop = PyTuple_Pack(3, reason_internal_error, host, error);
            Py_DECREF(error);
            if (drop == NULL || PyList_Append(drops, drop) < 0) {
                Py_XDECREF(drop);
                goto done;
            }
            Py_DECREF(drop);
            continue;
        }
        PyObject *entry = PyUnicode_Check(opened) ? PyTuple_Pack(3, opened, host, Py_None)
                                                  : PyTuple_Pack(2, host, opened);
        int appended = entry == NULL ? -1
            : PyList_Append(PyUnicode_Check(opened) ? drops : decoded, entry);
        Py_XDECREF(entry);
        Py_DECREF(opened);
        if (appended < 0)
            goto done;
    }
    result = PyTuple_Pack(2, decoded, drops);
done:
    memo_forget(&memo);
    Py_XDECREF(memo.append);
    Py_XDECREF(memo.popleft);
    PyMem_Free(buf);
    PyMem_Free(keys);
    Py_DECREF(seq);
    Py_XDECREF(decoded);
    Py_XDECREF(drops);
    return result;
}
#endif /* HAVE_LIBCRYPTO */

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"recvmmsg", (PyCFunction)(void (*)(void))speedups_recvmmsg, METH_FASTCALL,
     "recvmmsg(fd, max_count, max_size) -> list of (payload, host)"},
    {"parse_request_line", parse_request_line, METH_O,
     "parse_request_line(line) -> RequestFields or None"},
    {"set_request_fields", (PyCFunction)(void (*)(void))set_request_fields, METH_FASTCALL,
     "set_request_fields(cls, reference): the class results are made of"},
    {"split_lines", split_lines, METH_O, "split_lines(payload) -> (lines, escaped)"},
    {"crypto_open", (PyCFunction)(void (*)(void))crypto_open, METH_FASTCALL,
     "crypto_open(raw, block, data, low, high, app, state) -> 0, 1, reason or Lines"},
#ifdef HAVE_LIBCRYPTO
    {"crypto_cipher", (PyCFunction)(void (*)(void))crypto_cipher, METH_FASTCALL,
     "crypto_cipher(algo, key, iv) -> a CBC context for crypto_batch, or None"},
    {"crypto_batch", (PyCFunction)(void (*)(void))crypto_batch, METH_FASTCALL,
     "crypto_batch(batch, low, high, max_datagram, keys, by_peer, max_senders, state, "
     "catch) -> (decoded, drops)"},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "collector._speedups",
    "The collector's per-line hot path in C; see collector.speedups.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    int_1000 = PyLong_FromLong(1000);
    str_append = PyUnicode_InternFromString("append");
    str_popleft = PyUnicode_InternFromString("popleft");
    if (int_1000 == NULL || str_append == NULL || str_popleft == NULL)
        return NULL;
#ifdef HAVE_LIBCRYPTO
    reason_oversize = PyUnicode_InternFromString("oversize");
    reason_bad_length = PyUnicode_InternFromString("bad_length");
    reason_bad_padding = PyUnicode_InternFromString("bad_padding");
    reason_bad_timestamp = PyUnicode_InternFromString("bad_timestamp");
    reason_internal_error = PyUnicode_InternFromString("internal_error");
    if (reason_oversize == NULL || reason_bad_length == NULL || reason_bad_padding == NULL ||
        reason_bad_timestamp == NULL || reason_internal_error == NULL)
        return NULL;
#endif
    return PyModule_Create(&module_def);
}
