/**
 * The console shell: who is signed in (GET /api/me), the header, and which page the URL names.
 * Pages fetch their own data; a 401 anywhere brings back the sign-in page.
 */
import { useCallback, useEffect, useState } from 'react';
import { api, ApiError, sessionEvents, SESSION_LOST, type Me } from './api.js';
import { Header } from './components/Header.js';
import { AppImagesPage } from './pages/AppImagesPage.js';
import { AppPage } from './pages/AppPage.js';
import { AppsPage } from './pages/AppsPage.js';
import { EnvironmentPage } from './pages/EnvironmentPage.js';
import { ImageManifestPage } from './pages/ImageManifestPage.js';
import { ImagesPage } from './pages/ImagesPage.js';
import { RunPage } from './pages/RunPage.js';
import { RunsPage } from './pages/RunsPage.js';
import { SignInPage } from './pages/SignInPage.js';
import { Link, matchPath, navigate, safeLocalPath, useLocation } from './router.js';

type Session =
  | { state: 'loading' }
  | { state: 'signed-out' }
  | { state: 'signed-in'; me: Me }
  | { state: 'failed'; error: Error };

export function App() {
  const location = useLocation();
  const [session, setSession] = useState<Session>({ state: 'loading' });

  const loadSession = useCallback(async () => {
    try {
      setSession({ state: 'signed-in', me: await api.me() });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) setSession({ state: 'signed-out' });
      else setSession({ state: 'failed', error: error as Error });
    }
  }, []);

  useEffect(() => {
    void loadSession();
    const onLost = () => setSession({ state: 'signed-out' });
    sessionEvents.addEventListener(SESSION_LOST, onLost);
    return () => sessionEvents.removeEventListener(SESSION_LOST, onLost);
  }, [loadSession]);

  const pathname = location.split('?', 1)[0] ?? '/';
  const query = new URLSearchParams(location.slice(pathname.length));
  const onAuthPage = pathname === '/login' || pathname === '/signup';

  // Redirects happen after render, never during it.
  useEffect(() => {
    if (session.state === 'signed-out' && !onAuthPage) {
      const next = pathname === '/' ? '' : `?next=${encodeURIComponent(location)}`;
      navigate(`/login${next}`, { replace: true });
    } else if (session.state === 'signed-in' && (onAuthPage || pathname === '/')) {
      navigate(safeLocalPath(query.get('next'), '/apps'), { replace: true });
    }
  });

  if (session.state === 'loading') return <p className="boot muted">Loading…</p>;
  if (session.state === 'failed') {
    return (
      <main className="auth-page">
        <p className="error-note" role="alert">
          {session.error.message}
        </p>
        <button type="button" className="button-primary" onClick={() => void loadSession()}>
          Try again
        </button>
      </main>
    );
  }
  if (session.state === 'signed-out') {
    return (
      <SignInPage
        key={pathname}
        mode={pathname === '/signup' ? 'signup' : 'login'}
        next={query.get('next')}
        onSignedIn={loadSession}
      />
    );
  }

  const signOut = async () => {
    try {
      await api.logout();
    } finally {
      setSession({ state: 'signed-out' });
      navigate('/login');
    }
  };

  return (
    <>
      <Header username={session.me.username} onSignOut={() => void signOut()} />
      <Page pathname={pathname} me={session.me} />
    </>
  );
}

function Page({ pathname, me }: { pathname: string; me: Me }) {
  let params: Record<string, string> | null;
  if (pathname === '/apps' || pathname === '/apps/') return <AppsPage me={me} />;
  if (pathname === '/runs' || pathname === '/runs/') return <RunsPage />;
  if (pathname === '/images' || pathname === '/images/') return <ImagesPage me={me} />;
  if ((params = matchPath('/apps/:team/:app/images', pathname))) {
    return (
      <AppImagesPage key={pathname} team={params.team ?? ''} name={params.app ?? ''} me={me} />
    );
  }
  if ((params = matchPath('/apps/:team/:app/images/:reference', pathname))) {
    return (
      <ImageManifestPage
        key={pathname}
        team={params.team ?? ''}
        name={params.app ?? ''}
        reference={params.reference ?? ''}
      />
    );
  }
  if ((params = matchPath('/apps/:team/:app/environments/:env', pathname))) {
    return (
      <EnvironmentPage
        key={pathname}
        team={params.team ?? ''}
        name={params.app ?? ''}
        env={params.env ?? ''}
        me={me}
      />
    );
  }
  if ((params = matchPath('/apps/:team/:app', pathname))) {
    return (
      <AppPage
        key={`${params.team}/${params.app}`}
        team={params.team ?? ''}
        name={params.app ?? ''}
      />
    );
  }
  if (
    (params = matchPath('/apps/:team/:app/runs/:number', pathname)) &&
    /^\d+$/.test(params.number ?? '')
  ) {
    return (
      <RunPage
        key={pathname}
        team={params.team ?? ''}
        name={params.app ?? ''}
        number={Number(params.number)}
      />
    );
  }
  if (pathname === '/' || pathname === '/login' || pathname === '/signup') return null;
  return (
    <main className="page">
      <h1>Not found</h1>
      <p>
        There is no console page at <code>{pathname}</code>.{' '}
        <Link to="/apps">Back to your apps</Link>.
      </p>
    </main>
  );
}
