use super::*;

#[test]
fn routes_like_supervisor() {
    assert_eq!(route("/RPC2"), Route::Rpc);
    assert_eq!(route("/RPC2/anything"), Route::Rpc);
    assert_eq!(
        route("/logtail/grp%3Aproc/stderr"),
        Route::Logtail { namespec: "grp:proc".into(), channel: "stderr".into() }
    );
    assert_eq!(route("/logtail/grp:proc"), Route::Logtail { namespec: "grp:proc".into(), channel: "stdout".into() });
    assert_eq!(route("/logtail/web?x=1"), Route::Logtail { namespec: "web".into(), channel: "stdout".into() });
    assert_eq!(route("/logtail/a/b/c"), Route::Logtail { namespec: "a".into(), channel: "b/c".into() });
    assert_eq!(route("/logtail"), Route::NotFound);
    assert_eq!(route("/mainlogtail"), Route::MainLogtail);
    assert_eq!(route("/mergedtail?name=a&name=g%3A*"), Route::MergedTail);
    assert_eq!(route("/mergedtail/x"), Route::NotFound);
    assert_eq!(route("/ok.html"), Route::Ok);
    assert_eq!(route("/ok.html?x"), Route::Ok);
    assert_eq!(route("/"), Route::Web);
    assert_eq!(route("/index.html?action=refresh"), Route::Web);
    assert_eq!(route("/api/v1/processes/g%3Ap/stop"), Route::Web);
    assert_eq!(route("/metrics"), Route::Web);
    assert_eq!(route("/static/minisv.css"), Route::Static);
    assert_eq!(route("/static/other.css"), Route::NotFound);
    assert_eq!(route("/status.html"), Route::NotFound);
    assert_eq!(unquote("%41%zz%4"), "A%zz%4");
    assert_eq!(unquote("%e2%82%ac"), "€");
}
