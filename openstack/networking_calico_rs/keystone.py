"""Project names and parents from Keystone, for the labels
``projectcalico.org/openstack-project-name`` and ``-project-parent-id``.

As upstream: Keystone is asked with the credentials of
``[keystone_authtoken]`` (the service user neutron-server already has);
on a miss every project is listed, so one request answers for all the
ports of a resync; the cache is emptied when it holds
``[calico] project_name_cache_max`` projects. Without an ``auth_type``
there, ports are written without these two labels. While Keystone cannot
be asked, a port whose project is not cached keeps the labels it has (the
co-process is told ``project_unavailable``): an outage never takes away
labels a policy selects on. A Neutron request never fails for them."""

import time

from oslo_log import log

LOG = log.getLogger(__name__)

GROUP = "keystone_authtoken"
# A request to Keystone gives up after this long, and after a failure
# Keystone is not asked again for this long: port writes go on meanwhile.
TIMEOUT_SECS = 10
RETRY_SECS = 30


class ProjectCache(object):
    """Project id -> {"name", "parent_id"}, filled by `list_projects`
    (a callable returning objects or dicts with id, name and parent_id)."""

    def __init__(self, list_projects, max_size, clock=time.monotonic):
        self._list_projects = list_projects
        self._max_size = max_size
        self._clock = clock
        self._projects = {}
        self._failing = False
        self._retry_at = 0.0

    def get(self, project_id, refresh=True):
        """The project's name and parent, listing Keystone's projects on a
        miss (unless `refresh` is false); None if Keystone does not know
        it or cannot be asked."""
        if not project_id:
            return None
        found = self._projects.get(project_id)
        if found is None and refresh:
            self.refresh()
            found = self._projects.get(project_id)
        return found

    @property
    def unavailable(self):
        """Whether Keystone could not be asked the last time."""
        return self._failing

    def refresh(self):
        if self._failing and self._clock() < self._retry_at:
            return
        try:
            projects = list(self._list_projects())
        except Exception as e:
            # Logged once per outage, not once per port.
            if not self._failing:
                LOG.warning("calico: cannot list Keystone's projects (ports "
                            "keep the project labels they have): %s", e)
            self._failing = True
            self._retry_at = self._clock() + RETRY_SECS
            return
        if self._failing:
            LOG.info("calico: Keystone answers again")
        self._failing = False
        # Emptied only once Keystone answered: names stay through an outage.
        if len(self._projects) >= self._max_size:
            self._projects = {}
        for p in projects:
            pid, name, parent = (_field(p, "id"), _field(p, "name"),
                                 _field(p, "parent_id"))
            # Every listing refreshes what it names: a renamed project is
            # renamed on the next miss or resync.
            if pid and name:
                self._projects[pid] = {"name": name, "parent_id": parent}


def _field(project, name):
    if isinstance(project, dict):
        return project.get(name)
    return getattr(project, name, None)


def _no_projects():
    return []


def lister_from_conf(conf):
    """A callable listing Keystone's projects with `[keystone_authtoken]`'s
    credentials, or None when that section names no auth plugin."""
    from keystoneauth1 import loading
    from keystoneauth1 import session
    from keystoneclient.v3 import client

    loading.register_auth_conf_options(conf, GROUP)
    auth = loading.load_auth_from_conf_options(conf, GROUP)
    if auth is None:
        return None
    sess = session.Session(auth=auth, verify=_verify(conf),
                           timeout=TIMEOUT_SECS)
    keystone = client.Client(session=sess)
    return keystone.projects.list


def _verify(conf):
    """TLS verification as keystonemiddleware reads it from the same
    section (its options exist only where it registered them)."""
    group = conf[GROUP]
    try:
        if group.insecure:
            return False
        return group.cafile or True
    except Exception:
        return True


_cache = None


def projects(conf):
    """This process's cache (built on first use, as the driver's state is
    built after neutron-server forks)."""
    global _cache
    if _cache is None:
        lister = None
        try:
            lister = lister_from_conf(conf)
        except Exception:
            LOG.exception("calico: cannot build a Keystone client from [%s]",
                          GROUP)
        if lister is None:
            LOG.info("calico: no Keystone credentials in [%s]: ports are "
                     "written without project names", GROUP)
            lister = _no_projects
        _cache = ProjectCache(lister, conf.calico.project_name_cache_max)
    return _cache
