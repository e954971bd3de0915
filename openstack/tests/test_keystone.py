"""The project cache behind the project-name labels (run by
crates/openstack/tests/shim_python.rs)."""

import unittest

from networking_calico_rs import keystone


class FakeKeystone(object):
    def __init__(self, projects):
        self.projects = projects
        self.lists = 0
        self.down = False

    def list(self):
        self.lists += 1
        if self.down:
            raise ConnectionError("keystone is down")
        return list(self.projects)


def project(pid, name, parent="default"):
    return {"id": pid, "name": name, "parent_id": parent}


class ProjectCacheTest(unittest.TestCase):
    def test_a_miss_lists_once_and_answers_for_every_project(self):
        ks = FakeKeystone([project("p1", "demo"), project("p2", "web", "p1")])
        cache = keystone.ProjectCache(ks.list, 100)
        self.assertEqual(cache.get("p1"),
                         {"name": "demo", "parent_id": "default"})
        self.assertEqual(cache.get("p2"), {"name": "web", "parent_id": "p1"})
        self.assertEqual(ks.lists, 1)
        self.assertIsNone(cache.get(None))
        self.assertEqual(ks.lists, 1)

    def test_an_unknown_project_is_asked_for_again(self):
        ks = FakeKeystone([project("p1", "demo")])
        cache = keystone.ProjectCache(ks.list, 100)
        self.assertIsNone(cache.get("p9"))
        ks.projects.append(project("p9", "late"))
        self.assertEqual(cache.get("p9")["name"], "late")
        self.assertEqual(ks.lists, 2)
        self.assertFalse(cache.unavailable)

    def test_a_listing_renames(self):
        ks = FakeKeystone([project("p1", "demo")])
        cache = keystone.ProjectCache(ks.list, 100)
        cache.get("p1")
        ks.projects = [project("p1", "renamed", "p0")]
        cache.refresh()
        self.assertEqual(cache.get("p1"),
                         {"name": "renamed", "parent_id": "p0"})

    def test_without_refresh_only_the_cache_answers(self):
        ks = FakeKeystone([project("p1", "demo")])
        cache = keystone.ProjectCache(ks.list, 100)
        self.assertIsNone(cache.get("p1", refresh=False))
        cache.refresh()
        self.assertEqual(cache.get("p1", refresh=False)["name"], "demo")
        self.assertEqual(ks.lists, 1)

    def test_the_cache_is_emptied_at_its_maximum(self):
        ks = FakeKeystone([project("p%d" % i, "n%d" % i) for i in range(3)])
        cache = keystone.ProjectCache(ks.list, 3)
        cache.get("p0")
        ks.projects = [project("p0", "renamed"), project("p5", "new")]
        # Full: the next listing starts afresh (p1 and p2 are gone).
        self.assertEqual(cache.get("p5")["name"], "new")
        self.assertEqual(cache.get("p0", refresh=False)["name"], "renamed")
        self.assertIsNone(cache.get("p1", refresh=False))

    def test_names_survive_an_outage_which_is_reported(self):
        ks = FakeKeystone([project("p1", "demo")])
        now = [100.0]
        cache = keystone.ProjectCache(ks.list, 1, clock=lambda: now[0])
        cache.get("p1")
        ks.down = True
        with self.assertLogs(keystone.LOG.logger, "WARNING") as logs:
            self.assertIsNone(cache.get("p2"))
            now[0] += keystone.RETRY_SECS - 1
            self.assertIsNone(cache.get("p3"))
        self.assertEqual(len(logs.output), 1, logs.output)
        # Not asked again before the retry time: ports are not held up.
        self.assertEqual(ks.lists, 2)
        self.assertTrue(cache.unavailable)
        # Full, but not emptied: Keystone did not answer.
        self.assertEqual(cache.get("p1")["name"], "demo")
        ks.down = False
        self.assertIsNone(cache.get("p2"))
        self.assertTrue(cache.unavailable)
        now[0] += 1
        self.assertIsNone(cache.get("p2"))
        self.assertEqual(ks.lists, 3)
        self.assertFalse(cache.unavailable)

    def test_projects_without_a_name_are_not_cached(self):
        ks = FakeKeystone([{"id": "p1", "name": None}])
        cache = keystone.ProjectCache(ks.list, 100)
        self.assertIsNone(cache.get("p1"))


class ListerFromConfTest(unittest.TestCase):
    def conf(self, **authtoken):
        from keystoneauth1 import loading
        from oslo_config import cfg
        conf = cfg.ConfigOpts()
        conf([], project="test")
        loading.register_auth_conf_options(conf, keystone.GROUP)
        conf.register_opts(loading.get_auth_plugin_conf_options("password"),
                           keystone.GROUP)
        for k, v in authtoken.items():
            conf.set_override(k, v, keystone.GROUP)
        return conf

    def test_no_auth_type_means_no_keystone(self):
        self.assertIsNone(keystone.lister_from_conf(
            self.conf(username="neutron", password="x")))

    def test_a_password_section_gives_a_lister(self):
        conf = self.conf(auth_type="password", username="neutron",
                         password="x", project_name="service",
                         auth_url="http://192.0.2.1:5000")
        self.assertTrue(callable(keystone.lister_from_conf(conf)))


if __name__ == "__main__":
    unittest.main()
