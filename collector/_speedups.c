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
split_escaping(const char *s, Py_ssize_t n)
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
    return Py_BuildValue("(Nl)", lines, escaped);
}

/* split_lines over a span of memory: the crypto decoder splits part of a plaintext it never
 * makes a bytes object of. */
static PyObject *
split_span(const char *s, Py_ssize_t n)
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
                return split_escaping(s, n);
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
    return Py_BuildValue("(Ni)", lines, 0);
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

/* The longest timestamp logcrypto's `<micros> ` head may have (collector.decode.crypto). */
#define MAX_TIMESTAMP_DIGITS 20
#define REPLAY_TAG 16

/* Is the datagram a replay? The same steps, on the same objects, as the pure reference:
 * seen (a set of tags), order (a deque of them, oldest first), window (its bound). */
static int
is_replay(PyObject *data, PyObject *seen, PyObject *order, Py_ssize_t window)
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
    PyObject *appended = PyObject_CallMethodOneArg(order, str_append, tag);
    Py_DECREF(tag);
    if (appended == NULL)
        return -1;
    Py_DECREF(appended);
    Py_ssize_t held = PyObject_Size(order);
    if (held < 0)
        return -1;
    if (held > window) {
        PyObject *oldest = PyObject_CallMethodNoArgs(order, str_popleft);
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
        int replay = is_replay(data, seen, order, w);
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
        PyObject *head = PyBytes_FromStringAndSize(body, skip);
        if (head == NULL)
            goto fail;
        PyObject *known = PyDict_GetItemWithError(prefixes, head); /* borrowed */
        Py_DECREF(head);
        if (known == NULL && PyErr_Occurred())
            goto fail;
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

    PyObject *split = split_span(body, body_len);
    if (split == NULL)
        goto fail;
    PyObject *lines = PyTuple_GET_ITEM(split, 0);
    if (PyList_GET_SIZE(lines) == 0) {
        Py_DECREF(split);
        Py_DECREF(app);
        Py_DECREF(source);
        return PyUnicode_FromString("empty");
    }
    PyObject *at = PyFloat_FromDouble(emitted);
    if (at == NULL) {
        Py_DECREF(split);
        goto fail;
    }
    PyObject *fields[5] = {lines, app, source, at, PyTuple_GET_ITEM(split, 1)};
    PyObject *result = PyObject_Vectorcall(lines_class, fields, 5, NULL);
    Py_DECREF(at);
    Py_DECREF(split);
    Py_DECREF(app);
    Py_DECREF(source);
    return result;
fail:
    Py_DECREF(app);
    Py_DECREF(source);
    return NULL;
}

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
    return PyModule_Create(&module_def);
}
